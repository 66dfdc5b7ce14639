"""`aam quickstart`, the README's main job: the real command in a subprocess, then its kept
state; and a script that no longer comes out as expected exits non-zero."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aam_policy import _quickstart
from aam_policy.audit import AuditStore

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent

STEPS = [
    ("allowed read", "ALLOW", ""),
    ("intent drift", "DENY", "tool_not_in_intent"),
    ("over the data ceiling", "DENY", "sensitivity_exceeds_ceiling"),
    ("restricted personal data", "ESCALATE", "escalation_required"),
    ("self-approval", "REFUSED", ""),
    ("eligible approver", "APPROVED", ""),
    ("retry after approval", "ALLOW", "approval_granted"),
    ("chained-tool block", "DENY", "chain_blocked"),
    ("teardown", "COMPLETED", ""),
    ("after teardown", "DENY", "session_revoked"),
]


def test_quickstart_plays_the_session_and_leaves_nothing_running(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "aam_policy.cli", "quickstart", "--keep", str(keep)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert elapsed < 10, f"quickstart took {elapsed:.1f}s"
    assert "\x1b[" not in out  # not a terminal: no colour

    lines = out[: out.index("Trace (aam trace)")].splitlines()
    positions = []
    for name, outcome, code in STEPS:
        (index,) = [i for i, line in enumerate(lines) if line.strip().startswith(name + "  ")]
        assert outcome in lines[index] and code in lines[index] and "✓" in lines[index]
        positions.append(index)
    assert positions == sorted(positions)
    assert "audit chain OK: 13 event(s) verified" in out
    assert "found in: nothing" in out
    assert "all 14 checks as expected" in out

    # The trace it printed is the one in the kept audit store, in causal order.
    session_id = re.search(r"session\s+(sess_\S+)", out)[1]  # type: ignore[index]
    with AuditStore(keep / "state" / "audit.db") as store:
        trace = store.trace(session_id)
        assert store.verify().ok
    assert trace.gaps == []
    assert [step.type for step in trace.steps] == [
        "session.opened",
        "decision",
        "action.executed",
        "decision",
        "decision",
        "decision",
        "escalation.requested",
        "escalation.approved",
        "decision",
        "action.executed",
        "decision",
        "session.teardown",
        "decision",
    ]
    assert [(d.tool, d.outcome) for d in trace.decisions] == [
        ("warehouse.query", "allow"),
        ("files.share_link", "deny"),
        ("reports.export", "deny"),
        ("warehouse.query", "escalate"),
        ("warehouse.query", "allow"),
        ("reports.export", "deny"),
        ("warehouse.query", "deny"),
    ]
    for step in trace.steps:  # every step is printed, in the same order
        assert f" {step.seq}  " in out
    assert _quickstart.PROMPT.encode() not in b"".join(
        p.read_bytes() for p in keep.rglob("*") if p.is_file()
    )

    # No child left behind: the sidecar it started is gone.
    pid = int(re.search(r"\(pid (\d+), embedded engine\)", out)[1])  # type: ignore[index]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_step_that_comes_out_differently_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intents = tmp_path / "intents"
    shutil.copytree(REPO / "fixtures" / "intents", intents)
    analyst = intents / "analyst.yaml"
    text = analyst.read_text()
    # Without its chaining rules the export after restricted data is no longer blocked.
    start = text.index("  chaining:")
    analyst.write_text(text[:start] + text[text.index("  break_glass:") :])

    assert _quickstart.run(intents, color=False) == 1
    out = capsys.readouterr().out
    assert re.search(
        r"chained-tool block\s+expected deny:chain_blocked\s+got allow\S*\s+MISMATCH", out
    )
    assert "1 step(s) differ from the script" in out


def test_a_missing_intents_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _quickstart.run(tmp_path / "nowhere", color=False) == 2
    assert "--intents DIR" in capsys.readouterr().err
