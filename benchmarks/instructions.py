"""Instructions per embedded-engine decision, counted by valgrind's callgrind.

```
python -m benchmarks.instructions --intents 10 --decisions 300 [--scenario allow_read]
```

Wall-clock figures on a shared 2-vCPU machine drift by 30% within an hour; an instruction
count does not (the same code gives the same count to a few parts in ten thousand), so this is
how a change to the core Rego is compared. It generates the `--intents` bundle, then re-runs
itself under `valgrind --tool=callgrind --instr-atstart=no`: the child loads the engine, warms
it, switches instrumentation on (`callgrind_control -i on`) only around `--decisions`
evaluations of the benchmark's request mix (or of one `--scenario` prefix), and checks every
outcome. Prints instructions per decision. It counts instructions, not cache misses, so it
understates what a 1,000-intent bundle costs in time (P3). Needs valgrind on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._measure import Config, Workspace

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _child(bundle: Path, requests_file: Path) -> None:
    from aam_policy.engine import RegorusEngine, load_policy

    cases = json.loads(requests_file.read_text())
    engine = RegorusEngine(load_policy([bundle], tests=False))
    for case in cases[:50]:
        engine.evaluate("aam/decision", case["input"])
    toggle = ["callgrind_control", "-i"]
    subprocess.run([*toggle, "on", str(os.getpid())], check=True, capture_output=True)
    outcomes = [engine.evaluate("aam/decision", case["input"]) for case in cases]
    subprocess.run([*toggle, "off", str(os.getpid())], check=True, capture_output=True)
    for case, decision in zip(cases, outcomes, strict=True):
        if not isinstance(decision, dict) or decision.get("outcome") != case["outcome"]:
            sys.exit(f"{case['scenario']}: expected {case['outcome']}, got {decision!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--intents", type=int, default=10)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--scenario", default="", help="only requests whose scenario starts so")
    parser.add_argument("--child", nargs=2, metavar=("BUNDLE", "REQUESTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(Path(args.child[0]), Path(args.child[1]))
        return 0
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("valgrind (with callgrind_control) is not on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="aam-instr-") as scratch:
        ws = Workspace(Config(calls=max(2000, args.decisions * 20)), Path(scratch))
        chosen = [r for r in ws.requests(args.intents) if r.scenario.startswith(args.scenario)]
        chosen = chosen[: args.decisions]
        if not chosen:
            print(f"no request has a scenario starting with {args.scenario!r}", file=sys.stderr)
            return 2
        requests_file = Path(scratch) / "requests.json"
        requests_file.write_text(
            json.dumps(
                [{"input": r.input, "outcome": r.outcome, "scenario": r.scenario} for r in chosen]
            )
        )
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={scratch}/callgrind.out",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--child",
            str(ws.bundle(args.intents)),
            str(requests_file),
        ]
        run = subprocess.run(command, capture_output=True, text=True)
    found = _COLLECTED.search(run.stderr)
    if run.returncode != 0 or found is None:
        print(run.stderr[-2000:], file=sys.stderr)
        return 1
    per = int(found.group(1)) / len(chosen)
    label = args.scenario or "default mix"
    print(f"{args.intents} intents, {len(chosen)} decisions ({label}): {per:,.0f} instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
