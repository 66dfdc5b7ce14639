"""`python -m benchmarks [--quick] [--only P1,P4] [--repeats N] [--out FILE]`.

Prints a table (id, what, measured, target, PASS/FAIL) and writes the medians, the raw per-run
figures and the machine to a JSON file. A missed target never fails the process (exit 0); an
error in the harness itself does (exit 1), as does bad usage (exit 2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from benchmarks._measure import (
    Config,
    HarnessError,
    Workspace,
    machine_info,
    measure_audit,
    measure_build,
    measure_guard,
    measure_local,
    measure_opa,
    measure_scaling,
    measure_sidecar,
)
from benchmarks._stats import Result

ALL = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8")
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="aam-policy performance harness (P1-P8)."
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (fewer calls)")
    parser.add_argument("--only", help="comma-separated ids to run, e.g. P1,P4 (default: all)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs per figure (default 5, quick 2)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="results JSON (default %(default)s)"
    )
    return parser


def parse_only(text: str | None) -> set[str]:
    if not text:
        return set(ALL)
    wanted = {part.strip().upper() for part in text.split(",") if part.strip()}
    unknown = wanted - set(ALL)
    if unknown:
        raise ValueError(
            f"unknown id(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}"
        )
    return wanted


def render_table(rows: Sequence[Result]) -> str:
    headers = ("id", "what", "measured", "target", "result")
    cells = [(r.id, r.what, r.measured, r.target, r.verdict) for r in rows]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*c) for c in cells]
    for r in rows:
        for note in r.notes:
            out.append(f"  {r.id}: {note}")
        if r.skipped:
            out.append(f"  {r.id}: skipped: {r.skipped}")
    return "\n".join(out)


def run(selected: set[str], config: Config, log: bool = True) -> list[Result]:
    rows: list[Result] = []
    root = Path(tempfile.mkdtemp(prefix="aam-bench-"))

    def step(name: str) -> None:
        if log:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)

    try:
        ws = Workspace(config, root)
        if selected & {"P1", "P3", "P4", "P6"}:
            step("P1/P4/P6 sidecar")
            rows += measure_sidecar(ws, selected)
            step("OPA comparison")
            rows += measure_opa(ws, selected, rows)
        if selected & {"P2", "P3"}:
            step("P2 in-process")
            rows += measure_local(ws)
        if "P3" in selected:
            rows += measure_scaling(rows)
        if "P5" in selected:
            step("P5 compile and test")
            rows += measure_build(ws)
        if "P7" in selected:
            step("P7 audit")
            rows += measure_audit(ws)
        if "P8" in selected:
            step("P8 guard")
            rows += measure_guard(ws)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    order = {
        pid: i
        for i, pid in enumerate(
            ("P1", "P2", "P3", "P4", "OPA", "P5a", "P5b", "P6", "P7a", "P7b", "P8")
        )
    }
    wanted = [r for r in rows if r.id[:2] in selected or r.id == "OPA"]
    return sorted(wanted, key=lambda r: order.get(r.id, 99))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        selected = parse_only(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    config = Config.for_mode(args.quick, repeats)
    machine = machine_info()
    started = time.perf_counter()
    try:
        rows = run(selected, config)
    except HarnessError as exc:
        print(f"benchmarks: harness error: {exc}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print("benchmarks: harness error (see the traceback above)", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, python {machine['python']}, "
        f"regorus {machine['regorus']}, opa {'on PATH' if machine['opa'] else 'not on PATH'}"
    )
    print(
        f"method: median over {config.repeats} runs; latency runs = {config.calls} sequential "
        f"calls after {config.warmup} warm-up{' (QUICK smoke run)' if config.quick else ''}"
    )
    print()
    print(render_table(rows))
    print(f"\ntotal {elapsed:.1f} s")
    document = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "config": vars(config),
        "total_seconds": elapsed,
        "results": [r.to_json() for r in rows],
    }
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"benchmarks: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
