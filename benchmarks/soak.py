"""Bounded soak: many decisions against a real sidecar while its bundle is rewritten.

```
python -m benchmarks.soak --decisions 100000 --reload-every 5
```

Compiles `fixtures/intents` into a bundle tarball, starts `SidecarProcess` on it, and drives
`--decisions` POST /v1/data/aam/decision calls from `--clients` threads (one keep-alive
`httpx.Client` each) over the requests in `fixtures/requests` (their file names say the expected
outcome). Every `--reload-every` seconds the bundle is recompiled, alternating between the
fixture intents and a variant whose description differs, so the bundle revision changes and the
sidecar hot-swaps it under load. A decision fails when the answer is not 200, not a decision, or
not the outcome its fixture file names. The sidecar's VmRSS is sampled every second.

Prints a summary and writes it as JSON (`benchmarks/soak.json` by default): decisions, failures
(with up to 10 examples), revisions compiled and observed in `policy.revision`, RSS
start/end/max and growth %, duration and throughput. Exit status 1 when any decision failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from aam_policy.compiler import compile_bundle
from aam_policy.intents import load_intents
from aam_policy.sidecar import SidecarProcess

REPO = Path(__file__).resolve().parent.parent
FIXTURE_INTENTS = REPO / "fixtures" / "intents"
FIXTURE_REQUESTS = REPO / "fixtures" / "requests"
DEFAULT_OUT = Path(__file__).resolve().parent / "soak.json"


def _vm_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _intent_sets() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fixture intents and a variant (one description changed): two valid bundles whose
    revisions differ and whose decisions are the same."""
    base = [
        item.intent.model_dump(mode="json", by_alias=True)
        for item in load_intents([FIXTURE_INTENTS])
    ]
    variant = copy.deepcopy(base)
    variant[0]["metadata"]["description"] += " (soak variant)"
    return base, variant


def _requests() -> list[tuple[str, dict[str, Any], str]]:
    cases = []
    for path in sorted(FIXTURE_REQUESTS.glob("*.json")):
        expected = path.name.split("-", 1)[0]
        body = json.dumps({"input": json.loads(path.read_text(encoding="utf-8"))})
        cases.append((path.name, {"content": body}, expected))
    if not cases:
        raise SystemExit(f"no requests in {FIXTURE_REQUESTS}")
    return cases


class _Soak:
    def __init__(self, args: argparse.Namespace, sidecar: SidecarProcess) -> None:
        self.args = args
        self.sidecar = sidecar
        self.cases = _requests()
        self.lock = threading.Lock()
        self.issued = 0
        self.done = 0
        self.failures = 0
        self.failure_examples: list[str] = []
        self.revisions_seen: dict[str, int] = {}
        self.stop = threading.Event()
        self.swaps: list[float | None] = []

    def _next(self) -> int | None:
        with self.lock:
            if self.issued >= self.args.decisions:
                return None
            self.issued += 1
            return self.issued

    def _fail(self, what: str) -> None:
        with self.lock:
            self.failures += 1
            if len(self.failure_examples) < 10:
                self.failure_examples.append(what)

    def client(self) -> None:
        url = f"{self.sidecar.url}/v1/data/aam/decision"
        headers = {"content-type": "application/json"}
        seen: dict[str, int] = {}
        with httpx.Client(timeout=self.args.timeout, headers=headers) as http:
            while (n := self._next()) is not None:
                name, body, expected = self.cases[n % len(self.cases)]
                try:
                    response = http.post(url, **body)
                except httpx.HTTPError as exc:
                    self._fail(f"{name}: {type(exc).__name__}: {exc}")
                    continue
                try:
                    result = response.json()["result"] if response.status_code == 200 else None
                    outcome = result["outcome"]
                    allow = result["allow"]
                    revision = result["policy"]["revision"]
                except (ValueError, KeyError, TypeError):
                    self._fail(f"{name}: HTTP {response.status_code}: {response.text[:200]}")
                    continue
                if outcome != expected or allow != (outcome == "allow"):
                    self._fail(f"{name}: outcome {outcome!r} allow {allow!r}, want {expected}")
                    continue
                seen[revision] = seen.get(revision, 0) + 1
                with self.lock:
                    self.done += 1
        with self.lock:
            for revision, count in seen.items():
                self.revisions_seen[revision] = self.revisions_seen.get(revision, 0) + count


def _reloader(
    soak: _Soak,
    sets: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    out_dir: Path,
    tarball: Path,
    compiled: list[str],
) -> None:
    """Recompile every `reload_every` seconds, then probe until the sidecar serves the new
    revision: `soak.swaps` gets the seconds each swap took, or None when it was not seen."""
    turn = 1
    _, body, _ = soak.cases[0]
    url = f"{soak.sidecar.url}/v1/data/aam/decision"
    with httpx.Client(timeout=soak.args.timeout) as probe:
        while not soak.stop.wait(soak.args.reload_every):
            written = time.monotonic()
            bundle = compile_bundle(sets[turn % 2], out_dir, tarball=tarball)
            compiled.append(bundle.revision)
            turn += 1
            swapped: float | None = None
            while not soak.stop.is_set() and time.monotonic() - written < soak.args.reload_every:
                try:
                    served = probe.post(url, **body).json()["result"]["policy"]["revision"]
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    served = None
                if served == bundle.revision:
                    swapped = time.monotonic() - written
                    break
                time.sleep(0.05)
            if swapped is not None or not soak.stop.is_set():  # not cut short by the end
                soak.swaps.append(swapped)


def _sampler(soak: _Soak, pid: int, samples: list[tuple[float, int]], start: float) -> None:
    while not soak.stop.wait(1.0):
        rss = _vm_rss_kib(pid)
        if rss is not None:
            samples.append((round(time.monotonic() - start, 1), rss))


def run(args: argparse.Namespace) -> dict[str, Any]:
    sets = _intent_sets()
    with tempfile.TemporaryDirectory(prefix="aam-soak-") as tmp:
        out_dir, tarball = Path(tmp) / "bundle", Path(tmp) / "bundle.tar.gz"
        compiled = [compile_bundle(sets[0], out_dir, tarball=tarball).revision]
        sidecar = SidecarProcess(
            tarball,
            args=["--reload-interval", str(args.reload_interval), "--log-level", "WARNING"],
        )
        with sidecar:
            soak = _Soak(args, sidecar)
            # warm up (not counted): the first decisions pay for lazy initialisation
            with httpx.Client(timeout=args.timeout) as http:
                for _, body, _ in soak.cases:
                    http.post(f"{sidecar.url}/v1/data/aam/decision", **body)
            rss_start = _vm_rss_kib(sidecar.pid) or 0
            samples: list[tuple[float, int]] = [(0.0, rss_start)]
            start = time.monotonic()
            helpers = [
                threading.Thread(target=_reloader, args=(soak, sets, out_dir, tarball, compiled)),
                threading.Thread(target=_sampler, args=(soak, sidecar.pid, samples, start)),
            ]
            clients = [threading.Thread(target=soak.client) for _ in range(args.clients)]
            for thread in helpers + clients:
                thread.start()
            last_report = start
            while any(t.is_alive() for t in clients):
                for thread in clients:
                    thread.join(timeout=0.5)
                now = time.monotonic()
                if args.progress and now - last_report >= 10:
                    last_report = now
                    print(f"  {soak.issued} decisions, {soak.failures} failures", file=sys.stderr)
            duration = time.monotonic() - start
            soak.stop.set()
            for thread in helpers:
                thread.join()
            rss_end = _vm_rss_kib(sidecar.pid) or 0
            samples.append((round(duration, 1), rss_end))
            alive = sidecar.is_running()
            exit_code = sidecar.stop()
    rss_values = [rss for _, rss in samples]
    observed = sorted(soak.revisions_seen)
    seen = [swap for swap in soak.swaps if swap is not None]
    return {
        "decisions": soak.issued,
        "ok": soak.done,
        "failures": soak.failures,
        "failure_examples": soak.failure_examples,
        "clients": args.clients,
        "reload_every_s": args.reload_every,
        "bundles_compiled": len(compiled),
        "revisions_compiled": sorted(set(compiled)),
        "revisions_observed": observed,
        "decisions_per_revision": soak.revisions_seen,
        "reloads_seen": sum(1 for swap in soak.swaps if swap is not None),
        "reloads_missed": sum(1 for swap in soak.swaps if swap is None),
        "reload_swap_s": {
            "max": round(max(seen), 3) if seen else None,
            "mean": round(sum(seen) / len(seen), 3) if seen else None,
        },
        "rss_kib": {
            "start": rss_start,
            "end": rss_end,
            "max": max(rss_values),
            "growth_pct": round(100.0 * (rss_end - rss_start) / rss_start, 1)
            if rss_start
            else None,
            "samples": len(samples),
        },
        "sidecar_alive_at_end": alive,
        "sidecar_exit_code": exit_code,
        "duration_s": round(duration, 2),
        "throughput_per_s": round(soak.issued / duration, 1) if duration else None,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--reload-every", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request (seconds)")
    parser.add_argument(
        "--reload-interval", type=float, default=0.5, help="the sidecar's bundle poll interval"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--progress", action="store_true", help="report every 10 s on stderr")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2, sort_keys=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    rss = report["rss_kib"]
    print(
        f"soak: {report['decisions']} decisions in {report['duration_s']} s "
        f"({report['throughput_per_s']}/s, {report['clients']} clients), "
        f"{report['failures']} failures; {report['bundles_compiled']} bundles compiled, "
        f"{report['reloads_seen']} reloads served ({report['reloads_missed']} missed); "
        f"RSS {rss['start']} -> {rss['end']} KiB "
        f"(max {rss['max']}, {rss['growth_pct']}%); sidecar exit {report['sidecar_exit_code']}"
    )
    print(f"written to {args.out}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
