"""The `aam` command.

Exit codes: 0 success, 1 a check that ran and failed (tests, verify), 2 bad input or usage.
Each command imports what it needs lazily so `aam validate` does not pay for the HTTP stack.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input detected by the CLI itself; printed without a traceback."""


def _fail(message: str) -> int:
    print(f"aam: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# --- authoring: validate / schema / compile ---------------------------------------------------


def _job_count(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = -1
    if jobs < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return jobs


def _jobs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-j",
        "--jobs",
        type=_job_count,
        default=0,
        metavar="N",
        help="worker processes for large template sets (default 0: one per usable CPU)",
    )


def _jobs(args: argparse.Namespace) -> int:
    """--jobs, or the CPUs this process may run on (its affinity mask where the OS has one)."""
    if args.jobs > 0:
        return int(args.jobs)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cmd_validate(args: argparse.Namespace) -> int:
    from aam_policy.intents import IntentValidationError, load_intents

    try:
        loaded = load_intents(args.paths, jobs=_jobs(args))
    except IntentValidationError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return EXIT_BAD_INPUT
    noun = "intent" if len(loaded) == 1 else "intents"
    print(f"{len(loaded)} {noun} valid: " + ", ".join(item.intent.metadata.id for item in loaded))
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from aam_policy.intents import intent_schema

    print(json.dumps(intent_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def _cmd_compile(args: argparse.Namespace) -> int:
    from aam_policy.compiler import CompileError, compile_bundle, signing_config
    from aam_policy.intents import IntentValidationError, load_intents

    signing = None
    if args.signing_key:
        try:
            signing = signing_config(args.signing_key, args.signing_alg, args.key_id, args.scope)
        except CompileError as exc:
            return _fail(f"compile failed, nothing written: {exc}")
    try:
        loaded = load_intents(args.intents, jobs=_jobs(args))
    except IntentValidationError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print("compile aborted: nothing written", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        bundle = compile_bundle(
            [item.intent for item in loaded],
            Path(args.output),
            tarball=Path(args.tarball) if args.tarball else None,
            signing=signing,
            jobs=_jobs(args),
        )
    except CompileError as exc:
        return _fail(f"compile failed, nothing written: {exc}")
    print(
        f"compiled {len(loaded)} intent(s) into {args.output}"
        + (f" and {args.tarball}" if args.tarball else "")
        + f" (revision {bundle.revision[:12]}, {len(bundle.files)} files"
        + (f", signed {signing.algorithm} key id {signing.key_id!r})" if signing else ")")
    )
    return EXIT_OK


# --- policy: test / eval / check --------------------------------------------------------------


def _cmd_test(args: argparse.Namespace) -> int:
    from aam_policy.engine import PolicyLoadError, format_report, run_tests

    try:
        report = run_tests(args.paths or ["rego"], kind=args.engine, run=args.run)
    except PolicyLoadError as exc:
        return _fail(str(exc))
    print(format_report(report, args.format))
    if report.total == 0:
        print("aam: no tests found", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if report.failed == 0 else EXIT_FAILED


def _cmd_eval(args: argparse.Namespace) -> int:
    from aam_policy.engine import PolicyLoadError, default_engine, load_policy

    try:
        document = json.loads(Path(args.input).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _fail(f"{args.input}: no such file")
    except json.JSONDecodeError as exc:
        return _fail(f"{args.input}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
    # Accept both a bare input document and OPA's {"input": ...} envelope.
    if isinstance(document, dict) and set(document) == {"input"}:
        document = document["input"]
    if not isinstance(document, dict):
        return _fail(f"{args.input}: input must be a JSON object")
    try:
        engine = default_engine(load_policy([args.bundle]), kind=args.engine)
    except PolicyLoadError as exc:
        return _fail(str(exc))
    result = engine.evaluate(args.path, document)
    if result is None:
        print(f"aam: data.{args.path.strip('/').replace('/', '.')} is undefined", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result, indent=2, sort_keys=True))
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from aam_policy.engine import PolicyLoadError, check_paths

    try:
        problems = check_paths(args.paths)
    except PolicyLoadError as exc:
        return _fail(str(exc))
    for problem in problems:
        print(str(problem), file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("ok: every module parses and uses only allowed builtins")
    return EXIT_OK


# --- parser -------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aam",
        description="Agentic Access Management: intent templates -> OPA policy, decisions, trace.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="validate intent templates (YAML)")
    p.add_argument("paths", nargs="+", help="intent files or directories")
    _jobs_argument(p)
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("schema", help="print the intent template JSON Schema")
    p.set_defaults(handler=_cmd_schema)

    p = sub.add_parser("compile", help="compile intent templates into an OPA bundle")
    p.add_argument("intents", nargs="+", help="intent files or directories")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    p.add_argument("--tarball", help="also write bundle.tar.gz here")
    _jobs_argument(p)
    p.add_argument(
        "--signing-key",
        metavar="KEY",
        help="sign the bundle (.signatures.json, as opa build): PEM private key file for RS*, "
        "secret or file holding it for HS*",
    )
    p.add_argument(
        "--signing-alg",
        default="RS256",
        choices=("RS256", "RS384", "RS512", "HS256", "HS384", "HS512"),
        help="signing algorithm (default %(default)s)",
    )
    p.add_argument(
        "--key-id", default="default", help="keyid claim and kid header (default %(default)s)"
    )
    p.add_argument("--scope", default="", help="scope claim (verifiers must expect the same)")
    p.set_defaults(handler=_cmd_compile)

    p = sub.add_parser("test", help="run Rego tests (core library and generated)")
    p.add_argument("paths", nargs="*", help="Rego dirs, bundle dirs or tarballs (default: rego)")
    p.add_argument("--format", choices=["text", "json", "junit"], default="text")
    p.add_argument("--run", help="only run tests whose name matches this regex")
    _add_engine_flag(p)
    p.set_defaults(handler=_cmd_test)

    p = sub.add_parser("eval", help="evaluate a decision for one input document")
    p.add_argument("--bundle", required=True, help="bundle directory or tarball")
    p.add_argument("--input", required=True, help="JSON file with the enriched request")
    p.add_argument("--path", default="aam/decision", help="rule path (default aam/decision)")
    _add_engine_flag(p)
    p.set_defaults(handler=_cmd_eval)

    p = sub.add_parser("check", help="parse Rego and reject builtins outside capabilities.json")
    p.add_argument("paths", nargs="+")
    p.set_defaults(handler=_cmd_check)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


def _add_engine_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        choices=["auto", "regorus", "opa"],
        default="auto",
        help="auto = the opa binary when on PATH, else the embedded engine",
    )


def _version() -> str:
    from aam_policy import __version__

    return f"aam-policy {__version__}"


# --- runtime: sidecar / push / trace / audit ---------------------------------------------------


def _cmd_sidecar(args: argparse.Namespace) -> int:
    from aam_policy.sidecar.__main__ import main as sidecar_main

    return sidecar_main(args.sidecar_args)


def _cmd_push(args: argparse.Namespace) -> int:
    from aam_policy.sidecar import PushError, push_bundle

    try:
        result = push_bundle(Path(args.bundle), args.url, timeout=args.timeout)
    except PushError as exc:
        return _fail(str(exc))
    print(f"pushed revision {result.revision[:12]} to {args.url}: {len(result.policies)} policies")
    return EXIT_OK


def _open_audit(db: str | None, state: str | None):  # -> AuditStore
    from aam_policy._state import StateDir
    from aam_policy.audit import AuditStore

    # the operator's state directory (--state / $AAM_STATE_DIR / ./.aam) unless --db names one
    db = db if db is not None else str(StateDir.resolve(state).audit_db)
    if not Path(db).is_file():
        raise UsageError(f"{db}: no such audit database")
    return AuditStore(db)


def _cmd_trace(args: argparse.Namespace) -> int:
    from aam_policy.audit import render_trace

    with _open_audit(args.db, args.state) as store:
        trace = store.trace(args.session)
    if not trace.found:
        print(f"aam: no events for session {args.session}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(trace.to_json(), indent=2, sort_keys=True))
    else:
        print(render_trace(trace, color=sys.stdout.isatty()))
    return EXIT_OK


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    with _open_audit(args.db, args.state) as store:
        result = store.verify()
    print(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def _register_runtime(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sidecar",
        help="run the OPA-compatible decision sidecar (aam sidecar --help)",
        add_help=False,
        prefix_chars="+",  # every flag goes to the sidecar's own parser
    )
    p.add_argument("sidecar_args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=_cmd_sidecar)

    p = sub.add_parser("push", help="load a compiled bundle into a running OPA (real or ours)")
    p.add_argument("--bundle", required=True)
    p.add_argument("--url", default="http://127.0.0.1:8181")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(handler=_cmd_push)

    p = sub.add_parser("trace", help="rebuild one session's causal chain from the audit store")
    p.add_argument("session")
    p.add_argument("--db", help="audit database (default: the state directory's audit.db)")
    p.add_argument("--state", help="state directory (default: $AAM_STATE_DIR, else ./.aam)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_trace)

    p = sub.add_parser("audit", help="audit store commands")
    audit_sub = p.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    v = audit_sub.add_parser("verify", help="check the hash chain; names the first bad event")
    v.add_argument("--db", help="audit database (default: the state directory's audit.db)")
    v.add_argument("--state", help="state directory (default: $AAM_STATE_DIR, else ./.aam)")
    v.set_defaults(handler=_cmd_audit_verify)


# --- operator: session / approvals / collector -------------------------------------------------

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NS = 1_000_000_000


def _ttl(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"invalid ttl {text!r}: use seconds or N[smhd], e.g. 5m")
    return int(match[1]) * _TTL_UNITS[match[2] or "s"]


def _addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _operator_errors() -> tuple[type[BaseException], ...]:
    """Library errors that are the operator's input or environment, not a bug: exit 2."""
    import sqlite3

    from aam_policy.engine import PolicyLoadError
    from aam_policy.escalation import EscalationError
    from aam_policy.sessions import SessionError

    return (SessionError, EscalationError, PolicyLoadError, ValueError, OSError, sqlite3.Error)


def _one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        # pydantic's str() spans lines and echoes the input; the field and message suffice.
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split())


def _state(args: argparse.Namespace):  # -> StateDir
    from aam_policy._state import StateDir

    return StateDir.resolve(args.state)


def _actor(args: argparse.Namespace) -> str | None:
    """Who to record in the audit trail: --actor, else the local OS user."""
    if args.actor:
        return str(args.actor)
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _when(ns: int, now: int) -> str:
    stamp = datetime.fromtimestamp(ns / _NS, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    delta = (ns - now) // _NS
    return f"{stamp} (in {_span(delta)})" if delta >= 0 else f"{stamp} ({_span(-delta)} ago)"


def _span(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def _session_status(session: Any, now: int) -> str:
    if session.ended:
        return str(session.end_kind)
    return "live" if now < session.expires_at_ns else "expired"


def _cmd_session_open(args: argparse.Namespace) -> int:
    import time

    from aam_policy.engine import load_policy

    try:
        prompt = ""
        if args.prompt_file == "-":
            prompt = sys.stdin.read()
        elif args.prompt_file:
            prompt = Path(args.prompt_file).read_text(encoding="utf-8", errors="replace")
        registry = load_policy([args.bundle]).registry
        if not registry:
            return _fail(f"{args.bundle}: no intent registry (data.aam.registry); use aam compile")
        if args.intent not in registry:
            known = ", ".join(sorted(registry))
            return _fail(f"intent {args.intent!r} is not in the bundle (known: {known})")
        broker = _state(args).open_broker(registry)
        opened = broker.open(
            {"id": args.human, "roles": args.role, "groups": args.group},
            {"id": args.agent},
            args.intent,
            ttl=args.ttl,
            purpose=args.purpose,
            prompt=prompt,
        )
    except _operator_errors() as exc:
        return _fail(_one_line(exc))
    session = opened.session
    if args.json:
        print(
            json.dumps(
                {
                    "session": session.id,
                    "intent": session.intent,
                    "human": session.human.id,
                    "agent": session.agent.id,
                    "expires_at_ns": session.expires_at_ns,
                    "ttl_seconds": session.ttl_seconds,
                    "ttl_requested_seconds": session.ttl_requested_seconds,
                    "max_ttl_seconds": session.max_ttl_seconds,
                    "ttl_capped": session.ttl_capped,
                    "token": opened.token,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return EXIT_OK
    print(f"session {session.id} opened for intent {session.intent}")
    print(f"  human   {session.human.id}")
    print(f"  agent   {session.agent.id}")
    print(f"  expires {_when(session.expires_at_ns, time.time_ns())}")
    if session.ttl_capped:
        print(
            f"  ttl     capped to the intent's maximum {session.max_ttl_seconds}s"
            f" (requested {session.ttl_requested_seconds}s)"
        )
    # Shown once only: list/trace never print it. It carries no downstream credential.
    print("token (shown only now; hand it to the agent):")
    print(opened.token)
    return EXIT_OK


def _cmd_session_list(args: argparse.Namespace) -> int:
    import time

    try:
        broker = _state(args).open_broker()
        # Expired sessions are ended for real (and audited) so --all shows why they ended.
        broker.sweep_expired()
        sessions = broker.list(active_only=not args.all)
    except _operator_errors() as exc:
        return _fail(_one_line(exc))
    now = time.time_ns()
    if args.json:
        print(
            json.dumps(
                [
                    {**s.model_dump(mode="json"), "status": _session_status(s, now)}
                    for s in sessions
                ],
                indent=2,
                sort_keys=True,
            )
        )
        return EXIT_OK
    if not sessions:
        print("no sessions" if args.all else "no live sessions (--all shows ended ones)")
        return EXIT_OK
    rows = [
        [
            s.id,
            _session_status(s, now),
            s.intent,
            s.human.id,
            s.agent.id,
            _when(s.ended_at_ns or s.expires_at_ns, now),
            f"{s.actions_used}/{s.max_actions if s.max_actions is not None else '-'}",
        ]
        for s in sessions
    ]
    print(_table(["SESSION", "STATUS", "INTENT", "HUMAN", "AGENT", "ENDS", "ACTIONS"], rows))
    return EXIT_OK


def _cmd_session_teardown(args: argparse.Namespace) -> int:
    try:
        broker = _state(args).open_broker()
        before = broker.get(args.session)
        if before.ended:
            print(f"session {before.id} had already ended ({before.end_kind}: {before.end_reason})")
            return EXIT_OK
        broker.teardown(args.session, args.reason, actor=_actor(args))
    except _operator_errors() as exc:
        return _fail(_one_line(exc))
    print(f"session {args.session} torn down: {args.reason}")
    return EXIT_OK


def _cmd_session_revoke(args: argparse.Namespace) -> int:
    try:
        broker = _state(args).open_broker()
        if args.session is not None:
            broker.get(args.session)  # an unknown id is a typo, not "nothing to revoke"
        revoked = broker.revoke(
            args.session, agent=args.agent, human=args.human, reason=args.reason, actor=_actor(args)
        )
    except _operator_errors() as exc:
        return _fail(_one_line(exc))
    if not revoked:
        print("no live session matched")
    else:
        print(f"revoked {len(revoked)} session(s): {', '.join(revoked)}")
    return EXIT_OK


def _cmd_approvals_list(args: argparse.Namespace) -> int:
    import time

    try:
        queue = _state(args).open_queue()
        # Requests past their deadline become `expired` (and audited) before being shown.
        queue.expire_due()
        approvals = queue.list(status=args.status, session_id=args.session)
    except _operator_errors() as exc:
        return _fail(_one_line(exc))
    if args.json:
        print(json.dumps([a.model_dump(mode="json") for a in approvals], indent=2, sort_keys=True))
        return EXIT_OK
    if not approvals:
        print("no approvals")
        return EXIT_OK
    now = time.time_ns()
    rows = [
        [
            a.id,
            a.status,
            a.session_id,
            str(a.action.get("tool") or "-"),
            a.human or "-",
            ", ".join(a.approvers),
            f"expires {_when(a.expires_at_ns, now)}"
            if a.status == "pending"
            else f"by {a.resolved_by or '-'}: {a.why or ''}",
        ]
        for a in approvals
    ]
    print(_table(["APPROVAL", "STATUS", "SESSION", "TOOL", "HUMAN", "APPROVERS", ""], rows))
    return EXIT_OK


def _cmd_approvals_resolve(args: argparse.Namespace) -> int:
    import time

    try:
        queue = _state(args).open_queue()
        resolve = queue.approve if args.verdict == "approve" else queue.deny
        approval = resolve(args.approval, {"id": args.approver, "roles": args.role}, args.why)
    except _operator_errors() as exc:
        return _fail(_one_line(exc))
    line = f"approval {approval.id} {approval.status} by {approval.resolved_by}"
    if approval.grant_expires_at_ns is not None:
        line += (
            f"; grant for session {approval.session_id} valid until"
            f" {_when(approval.grant_expires_at_ns, time.time_ns())}"
        )
    print(line)
    return EXIT_OK


def _cmd_collector(args: argparse.Namespace) -> int:
    from aam_policy.audit import AuditStore, CollectorServer

    host, port = args.addr
    try:
        store = AuditStore(args.audit_db) if args.audit_db else _state(args).open_audit()
        server = CollectorServer(store, host, port)
    except _operator_errors() as exc:
        return _fail(_one_line(exc))
    print(f"aam collector: POST {server.url}/logs -> {store.path}", flush=True)
    try:
        server.serve_forever()
    finally:
        store.close()
    return EXIT_OK


def _register_operator(sub: argparse._SubParsersAction) -> None:
    def state_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state", help="state directory (default: $AAM_STATE_DIR, else ./.aam)")

    def actor_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--actor", help="who to record in the audit trail (default: OS user)")

    p = sub.add_parser("session", help="open, list, tear down and revoke JIT agent sessions")
    session_sub = p.add_subparsers(dest="session_command", metavar="COMMAND", required=True)

    s = session_sub.add_parser("open", help="open a session; prints its token once")
    s.add_argument("--bundle", required=True, help="compiled bundle (directory or tarball)")
    s.add_argument("--intent", required=True, help="intent id from the bundle")
    s.add_argument("--human", required=True, help="the person the agent acts for")
    s.add_argument("--role", action="append", default=[], help="the human's role (repeatable)")
    s.add_argument("--group", action="append", default=[], help="the human's group (repeatable)")
    s.add_argument("--agent", required=True, help="the agent's identity (e.g. a SPIFFE id)")
    s.add_argument("--ttl", type=_ttl, help="300, 90s, 5m, 1h (capped by the intent's max)")
    s.add_argument("--purpose", default="", help="why the session is opened")
    s.add_argument("--prompt-file", help="the prompt ('-' = stdin); only its hash is kept")
    s.add_argument("--json", action="store_true")
    state_flag(s)
    s.set_defaults(handler=_cmd_session_open)

    s = session_sub.add_parser("list", help="live sessions (expired ones are swept first)")
    s.add_argument("--all", action="store_true", help="include ended sessions")
    s.add_argument("--json", action="store_true")
    state_flag(s)
    s.set_defaults(handler=_cmd_session_list)

    s = session_sub.add_parser("teardown", help="end a session (completed)")
    s.add_argument("session", help="session id")
    s.add_argument("--reason", default="completed")
    actor_flag(s)
    state_flag(s)
    s.set_defaults(handler=_cmd_session_teardown)

    s = session_sub.add_parser("revoke", help="revoke live sessions by id, agent or human")
    target = s.add_mutually_exclusive_group(required=True)
    target.add_argument("--session", help="session id")
    target.add_argument("--agent", help="every live session of this agent")
    target.add_argument("--human", help="every live session of this human")
    s.add_argument("--reason", default="revoked")
    actor_flag(s)
    state_flag(s)
    s.set_defaults(handler=_cmd_session_revoke)

    p = sub.add_parser("approvals", help="list and resolve human approval requests")
    approvals_sub = p.add_subparsers(dest="approvals_command", metavar="COMMAND", required=True)

    a = approvals_sub.add_parser("list", help="approval requests, oldest first")
    a.add_argument("--status", choices=["pending", "approved", "denied", "expired"])
    a.add_argument("--session", help="only this session's requests")
    a.add_argument("--json", action="store_true")
    state_flag(a)
    a.set_defaults(handler=_cmd_approvals_list)

    for verdict, help_text in (
        ("approve", "approve a pending request (creates a grant)"),
        ("deny", "deny a pending request"),
    ):
        a = approvals_sub.add_parser(verdict, help=help_text)
        a.add_argument("approval", help="approval id")
        a.add_argument("--approver", required=True, help="your identity")
        a.add_argument("--role", action="append", default=[], help="your role (repeatable)")
        a.add_argument("--why", required=True, help="the reason, recorded in the audit trail")
        state_flag(a)
        a.set_defaults(handler=_cmd_approvals_resolve, verdict=verdict)

    p = sub.add_parser("collector", help="receive OPA decision logs (POST /logs) into the audit")
    p.add_argument("--addr", type=_addr, default=("127.0.0.1", 8282), help="HOST:PORT")
    p.add_argument("--audit-db", help="audit database (default: the state's audit.db)")
    state_flag(p)
    p.set_defaults(handler=_cmd_collector)


# --- demo: quickstart --------------------------------------------------------------------------


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from aam_policy._quickstart import run

    color = {"auto": None, "always": True, "never": False}[args.color]
    return run(
        Path(args.intents) if args.intents else None,
        Path(args.keep) if args.keep else None,
        color,
    )


def _register_quickstart(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="play one scripted agent session end to end")
    p.add_argument("--intents", help="intent templates (default: the checkout's fixtures/intents)")
    p.add_argument("--keep", metavar="DIR", help="write bundle, state and logs here and keep them")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(handler=_cmd_quickstart)


# --- bench: the performance harness (benchmarks/, in a source checkout only) -------------------


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        from benchmarks.__main__ import main as bench_main
    except ImportError as exc:
        return _fail(
            f"the benchmark harness is not importable ({exc}): it lives in benchmarks/ of a "
            "source checkout, not in the wheel; run `aam bench` from the repository root"
        )
    return bench_main(args.bench_args)


def _register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run the performance harness (aam bench --help; from a source checkout)",
        add_help=False,
        prefix_chars="+",  # every flag goes to the harness's own parser
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=_cmd_bench)


_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_runtime,
    _register_operator,
    _register_quickstart,
    _register_bench,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        return _fail(str(exc))
    except (OSError, sqlite3.Error) as exc:
        # the machine, not the input: a full disk, a database that is not one, no permission
        print(f"aam: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
