"""The operator CLI (`aam session`, `aam approvals`, `aam collector`) and its state directory.

CLI tests run the real command in a subprocess against a temp `--state` dir and a compiled
bundle; `_state` is unit-tested in process.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import run_aam
from compiler_helpers import FIXTURE_INTENTS, intent
from session_helpers import ALICE, BOT, enriched_request, escalate_decision, sqlite_bytes

from aam_policy._state import KEY_FILE, StateDir
from aam_policy.audit import AuditStore
from aam_policy.compiler import compile_bundle
from aam_policy.sessions import KeyConfigError, SessionBroker, SigningKeys, TokenInvalid

INTENT = "resolve-support-ticket"  # fixtures/intents/support.yaml: max_ttl 10m
MAX_TTL = 600
BOB = "bob@example.com"
LEAD = "carol@example.com"
_ISOLATE = ("AAM_STATE_DIR", "AAM_SESSION_KEYS", "AAM_SESSION_ACTIVE_KID", "AAM_AUDIT_DB")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATE}
    env.update(extra)
    return env


def _aam(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_aam(*args, env=env or _env())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    if hasattr(importlib.import_module("aam_policy.intents"), "load_intents"):
        done = _aam("compile", str(FIXTURE_INTENTS), "-o", str(out))
        assert done.returncode == 0, done.stderr
    else:
        # The YAML loader is not in yet: the same intent id and limits, built by hand.
        compile_bundle([intent(INTENT, session={"max_ttl": MAX_TTL, "max_actions": 50})], out)
    return out


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _open(bundle: Path, state: Path, *extra: str, agent: str = BOT.id) -> dict[str, Any]:
    done = _aam(
        "session", "open", "--bundle", str(bundle), "--intent", INTENT,
        "--human", ALICE.id, "--role", "support-agent", "--agent", agent,
        "--state", str(state), "--json", *extra,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _list(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = _aam("session", "list", "--state", str(state), *extra)
    assert done.returncode == 0, done.stderr
    return done


def _clean_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr


# --- sessions --------------------------------------------------------------------------------


def test_open_list_teardown_and_the_token_is_shown_only_once(bundle: Path, state: Path) -> None:
    prompt = state.parent / "prompt.txt"
    prompt.write_text("refund ch_123 please " + "context " * 200, encoding="utf-8")
    opened = _open(bundle, state, "--purpose", "refund", "--prompt-file", str(prompt))
    sid, token = opened["session"], opened["token"]
    assert sid.startswith("sess_") and token.count(".") == 2
    assert opened["ttl_seconds"] == MAX_TTL and not opened["ttl_capped"]

    live = _list(state)
    assert sid in live.stdout and "live" in live.stdout
    as_json = json.loads(_list(state, "--json").stdout)
    assert [s["id"] for s in as_json] == [sid]
    assert as_json[0]["status"] == "live"

    done = _aam("session", "teardown", sid, "--reason", "ticket closed", "--state", str(state))
    assert done.returncode == 0, done.stderr
    assert sid not in _list(state).stdout
    ended = _list(state, "--all")
    assert sid in ended.stdout and "completed" in ended.stdout
    again = _aam("session", "teardown", sid, "--state", str(state))
    assert again.returncode == 0 and "already ended" in again.stdout

    listings = live.stdout + ended.stdout + _list(state, "--all", "--json").stdout
    assert token not in listings
    signature = token.rsplit(".", 1)[1].encode()
    assert signature not in sqlite_bytes(state / "audit.db")
    assert prompt.read_text(encoding="utf-8").encode() not in sqlite_bytes(state / "audit.db")
    with AuditStore(state / "audit.db") as store:
        types = [event.type for event in store.events()]
        assert types == ["session.opened", "session.teardown"]
        assert store.verify().ok


def test_text_open_prints_expiry_and_says_when_ttl_is_capped(bundle: Path, state: Path) -> None:
    done = _aam(
        "session", "open", "--bundle", str(bundle), "--intent", INTENT, "--human", ALICE.id,
        "--agent", BOT.id, "--ttl", "2h", "--state", str(state),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"capped to the intent's maximum {MAX_TTL}s (requested 7200s)" in done.stdout
    assert "expires" in done.stdout
    token = done.stdout.strip().splitlines()[-1]
    assert token.count(".") == 2

    capped = _open(bundle, state, "--ttl", "90m")
    assert capped["ttl_capped"] and capped["ttl_seconds"] == MAX_TTL
    assert capped["ttl_requested_seconds"] == 5400
    short = _open(bundle, state, "--ttl", "300")
    assert not short["ttl_capped"] and short["ttl_seconds"] == 300


def test_revoke_by_agent_ends_every_session_of_that_agent(bundle: Path, state: Path) -> None:
    first, second = _open(bundle, state), _open(bundle, state)
    other = _open(bundle, state, agent="spiffe://example.org/agents/planner")
    done = _aam("session", "revoke", "--agent", BOT.id, "--reason", "leak", "--state", str(state))
    assert done.returncode == 0, done.stderr
    assert "revoked 2 session(s)" in done.stdout
    rows = {s["id"]: s for s in json.loads(_list(state, "--all", "--json").stdout)}
    assert rows[first["session"]]["status"] == rows[second["session"]]["status"] == "revoked"
    assert rows[first["session"]]["end_reason"] == "leak"
    assert rows[other["session"]]["status"] == "live"

    nothing = _aam("session", "revoke", "--agent", BOT.id, "--state", str(state))
    assert nothing.returncode == 0 and "no live session matched" in nothing.stdout
    by_id = _aam("session", "revoke", "--session", other["session"], "--state", str(state))
    assert by_id.returncode == 0 and other["session"] in by_id.stdout
    _clean_error(
        _aam("session", "revoke", "--session", "sess_nope", "--state", str(state)), "sess_nope"
    )


def test_the_token_verifies_only_with_the_state_key(bundle: Path, state: Path) -> None:
    opened = _open(bundle, state)
    broker = StateDir(state, environ={}).open_broker()
    assert broker.verify(opened["token"]).id == opened["session"]
    foreign = SessionBroker(state / "other.db", SigningKeys.generate(warn=False), {})
    with pytest.raises(TokenInvalid, match="key id is unknown"):
        foreign.verify(opened["token"])


def test_bad_arguments_exit_2_without_a_traceback(bundle: Path, state: Path) -> None:
    base = ("session", "open", "--bundle", str(bundle), "--human", ALICE.id, "--agent", BOT.id)
    s = ("--state", str(state))
    _clean_error(_aam(*base, "--intent", "no-such-intent", *s), "no-such-intent", INTENT)
    _clean_error(_aam(*base, "--intent", INTENT, "--ttl", "soon", *s), "invalid ttl")
    _clean_error(_aam(*base, "--intent", INTENT, "--ttl", "0", *s), "invalid ttl")
    _clean_error(_aam(*base[:-2], "--intent", INTENT, *s), "--agent")
    missing = ("--prompt-file", str(state.parent / "nope.txt"))
    _clean_error(_aam(*base, "--intent", INTENT, *missing, *s), "nope.txt")
    no_bundle = ("--bundle", str(state.parent / "none"))
    _clean_error(_aam(*base, *no_bundle, "--intent", INTENT, *s), "no such file")
    bad_human = ("session", "open", "--bundle", str(bundle), "--intent", INTENT)
    _clean_error(_aam(*bad_human, "--human", "a\x01b", "--agent", BOT.id, *s), "human id")
    _clean_error(_aam("session", "teardown", "sess_nope", *s), "no session 'sess_nope'")
    _clean_error(_aam("session", "revoke", *s), "--session")
    _clean_error(_aam("approvals", "list", "--status", "maybe", *s), "invalid choice")
    _clean_error(_aam("approvals", "approve", "apr_x", "--approver", BOB, *s), "--why")
    bad_keys = _env(AAM_SESSION_KEYS="k1:not base64!")
    _clean_error(_aam("session", "list", *s, env=bad_keys), "base64")
    assert _aam("collector", "--addr", "nowhere", *s).returncode == 2


def test_state_dir_comes_from_the_environment(bundle: Path, state: Path) -> None:
    env = _env(AAM_STATE_DIR=str(state))
    done = _aam(
        "session", "open", "--bundle", str(bundle), "--intent", INTENT,
        "--human", ALICE.id, "--agent", BOT.id, "--json", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["session"] in _list(state).stdout
    assert (state / KEY_FILE).is_file()


# --- approvals -------------------------------------------------------------------------------


def _escalation(state: Path, opened: dict[str, Any], human: str = ALICE.id) -> str:
    """An approval created the way the enforcement point does it: through the library."""
    session = {
        "id": opened["session"],
        "intent": INTENT,
        "human": human,
        "agent": BOT.id,
        "expires_at_ns": opened["expires_at_ns"],
    }
    queue = StateDir(state, environ={}).open_queue()
    return queue.request(escalate_decision(), enriched_request(session)).id


def _resolve(
    state: Path, verdict: str, approval: str, approver: str, *roles: str
) -> subprocess.CompletedProcess[str]:
    role_args = [arg for role in roles for arg in ("--role", role)]
    return _aam(
        "approvals", verdict, approval, "--approver", approver, *role_args,
        "--why", "known customer", "--state", str(state),
    )  # fmt: skip


def test_approve_checks_eligibility_once_and_feeds_the_broker(bundle: Path, state: Path) -> None:
    opened = _open(bundle, state)
    approval = _escalation(state, opened)

    pending = _aam("approvals", "list", "--state", str(state))
    assert pending.returncode == 0, pending.stderr
    assert approval in pending.stdout and "pending" in pending.stdout
    assert "role:payments-lead" in pending.stdout and "payments.refund" in pending.stdout

    _clean_error(_resolve(state, "approve", approval, BOB, "support-agent"), "not among")
    ok = _resolve(state, "approve", approval, LEAD, "payments-lead")
    assert ok.returncode == 0, ok.stderr
    assert f"approval {approval} approved by {LEAD}" in ok.stdout
    _clean_error(_resolve(state, "approve", approval, LEAD, "payments-lead"), "already approved")

    approved = json.loads(
        _aam("approvals", "list", "--status", "approved", "--json", "--state", str(state)).stdout
    )
    assert [a["id"] for a in approved] == [approval]
    assert approved[0]["resolved_by"] == LEAD
    assert _aam("approvals", "list", "--status", "pending", "--state", str(state)).stdout == (
        "no approvals\n"
    )
    grants = StateDir(state, environ={}).open_broker().to_input(opened["session"])["approvals"]
    assert [g["approval_id"] for g in grants] == [approval]
    with AuditStore(state / "audit.db") as store:
        events = [(e.type, e.actor) for e in store.events()]
    assert ("escalation.approved", LEAD) in events
    assert opened["token"].encode() not in sqlite_bytes(state / "audit.db")


def test_self_approval_and_unknown_approval_exit_2(bundle: Path, state: Path) -> None:
    approval = _escalation(state, _open(bundle, state))
    _clean_error(
        _resolve(state, "approve", approval, ALICE.id, "payments-lead"), "their own session"
    )
    _clean_error(_resolve(state, "approve", "apr_nope", LEAD, "payments-lead"), "apr_nope")
    still = _aam("approvals", "list", "--status", "pending", "--json", "--state", str(state))
    assert [a["id"] for a in json.loads(still.stdout)] == [approval]


def test_deny_then_approve_is_already_resolved(bundle: Path, state: Path) -> None:
    opened = _open(bundle, state)
    approval = _escalation(state, opened)
    denied = _resolve(state, "deny", approval, LEAD, "payments-lead")
    assert denied.returncode == 0, denied.stderr
    assert "denied" in denied.stdout and "grant" not in denied.stdout
    _clean_error(_resolve(state, "approve", approval, LEAD, "payments-lead"), "already denied")
    by_session = _aam(
        "approvals", "list", "--session", opened["session"], "--json", "--state", str(state)
    )
    rows = json.loads(by_session.stdout)
    assert [(a["status"], a["why"]) for a in rows] == [("denied", "known customer")]
    assert StateDir(state, environ={}).open_broker().to_input(opened["session"])["approvals"] == []


# --- collector -------------------------------------------------------------------------------


def _sigint_as_from_a_terminal() -> None:
    # A suite run as a background job inherits SIGINT ignored, and so would the collector.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_collector_ingests_opa_decision_logs_and_stops_cleanly(
    tmp_path: Path, stop: signal.Signals
) -> None:
    db = tmp_path / "collected.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aam_policy.cli", "collector", "--addr", "127.0.0.1:0",
         "--audit-db", str(db), "--state", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=_sigint_as_from_a_terminal,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        url = banner.split("POST ", 1)[1].split(" ", 1)[0]
        event = {
            "decision_id": "d-1",
            "path": "aam/decision",
            "input": {"session": {"id": "sess_c"}, "action": {"tool": "crm.read_ticket"}},
            "result": {"outcome": "allow", "allow": True, "reasons": []},
            "timestamp": "2026-01-01T00:00:01Z",
        }
        reply = httpx.post(url, json=[event], timeout=10)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"received": 1, "ingested": 1}
    finally:
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # a clean stop, not death by the signal (-15 / -2)
    with AuditStore(db) as store:
        assert [(e.type, e.session_id) for e in store.events()] == [("decision", "sess_c")]


# --- _state ----------------------------------------------------------------------------------


def test_resolve_prefers_the_flag_then_the_environment(tmp_path: Path) -> None:
    env = {"AAM_STATE_DIR": str(tmp_path / "env")}
    assert StateDir.resolve(tmp_path / "flag", env).path == tmp_path / "flag"
    from_env = StateDir.resolve(None, env)
    assert from_env.path == tmp_path / "env"
    assert from_env.sessions_db == tmp_path / "env" / "sessions.db"
    assert from_env.audit_db == tmp_path / "env" / "audit.db"
    assert StateDir.resolve(None, {}).path == Path(".aam")
    moved = StateDir.resolve(tmp_path / "s", {"AAM_AUDIT_DB": str(tmp_path / "shared.db")})
    assert moved.audit_db == tmp_path / "shared.db"


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s", environ={})
    keys = state.signing_keys()
    path = tmp_path / "s" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) & 0o077 == 0
    assert path.read_text(encoding="utf-8").startswith(keys.active_kid + ":")
    assert path.read_text(encoding="utf-8") not in repr(keys)
    again = StateDir(tmp_path / "s", environ={}).signing_keys()
    assert again.active_kid == keys.active_kid
    token = keys.sign(
        {"sid": "s", "sub": "h", "agent": "a", "intent": "i", "iat": 1, "exp": 2, "jti": "j"}
    )
    assert again.verify(token)["sid"] == "s"
    assert [p.name for p in (tmp_path / "s").iterdir()] == [KEY_FILE]  # no temp file left


def test_keys_come_from_the_environment_when_set(tmp_path: Path) -> None:
    spec = f"k2:{SigningKeys.new_secret()},k1:{SigningKeys.new_secret()}"
    state = StateDir(tmp_path / "s", environ={"AAM_SESSION_KEYS": spec})
    assert state.signing_keys().kids == ("k2", "k1")
    assert not (tmp_path / "s" / KEY_FILE).exists()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s", environ={})
    state.signing_keys()
    (tmp_path / "s" / KEY_FILE).chmod(0o644)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        state.signing_keys()


def test_broker_queue_and_audit_are_wired_together(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s", environ={})
    registry = {INTENT: {"id": INTENT, "session": {"max_ttl_seconds": 60, "max_actions": 3}}}
    audit = state.open_audit()
    queue = state.open_queue(audit)
    broker = state.open_broker(registry, queue=queue, audit=audit)
    opened = broker.open(ALICE, BOT, INTENT, ttl=30)
    request = enriched_request(broker.to_input(opened.session.id))
    approval = queue.request(escalate_decision(), request)
    queue.approve(approval.id, {"id": LEAD, "roles": ["payments-lead"]}, why="ok")
    assert [g["approval_id"] for g in broker.to_input(opened.session.id)["approvals"]] == [
        approval.id
    ]
    broker.teardown(opened.session.id)
    assert [e.type for e in audit.events()] == [
        "session.opened",
        "escalation.requested",
        "escalation.approved",
        "session.teardown",
    ]
    audit.close()
    with sqlite3.connect(state.sessions_db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "approvals"} <= tables
    assert "events" not in tables
