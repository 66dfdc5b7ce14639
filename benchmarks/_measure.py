"""The measurements P1-P8. Each group returns `Result` rows; the harness prints and saves them.

Method: every latency figure is the median, over `repeats` runs, of that run's p50 / p99 over
`calls` sequential calls made after a warm-up. Every decision a run times is checked against the
outcome and reason codes its request was generated for (a mismatch is an error, so a fast error
path can never pass for a fast decision).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._floor import floor_p50_us
from benchmarks._generate import (
    GeneratedIntent,
    GeneratedRequest,
    all_scenarios,
    check_outcome,
    docs,
    generate_intents,
    generate_requests,
    write_yaml,
)
from benchmarks._stats import Result, fmt_us, latency_stats, median, medians, time_calls

REPO = Path(__file__).resolve().parent.parent
FIXTURE_INTENTS = REPO / "fixtures" / "intents"
BIG, SMALL = 1000, 10
# concurrent appenders for P7a: a gateway serves many sessions at once; commits are shared
APPEND_WRITERS = 4
RELOADS = 5  # hot reloads before P6's after-reload figure


class HarnessError(Exception):
    """The harness itself failed (not a missed target)."""


@dataclass
class Config:
    repeats: int = 5
    calls: int = 2000  # sequential calls per latency run
    warmup: int = 300
    concurrency: int = 16
    throughput_calls: int = 4000  # decisions per throughput run
    append_events: int = 2000  # audit appends per run
    trace_events: int = 10_000
    guard_calls: int = 500  # Guard.authorize calls per run (each commits to SQLite)
    quick: bool = False

    @classmethod
    def for_mode(cls, quick: bool, repeats: int) -> Config:
        if quick:
            return cls(
                repeats=repeats,
                calls=300,
                warmup=50,
                throughput_calls=800,
                append_events=200,
                guard_calls=100,
                trace_events=2000,
                quick=True,
            )
        return cls(repeats=repeats)


@dataclass
class Workspace:
    """Generated bundles and requests, built once and shared by the groups."""

    config: Config
    root: Path
    _intents: dict[int, list[GeneratedIntent]] = field(default_factory=dict)
    _bundles: dict[int, Path] = field(default_factory=dict)
    _requests: dict[int, list[GeneratedRequest]] = field(default_factory=dict)

    def intents(self, n: int) -> list[GeneratedIntent]:
        if n not in self._intents:
            self._intents[n] = generate_intents(n)
        return self._intents[n]

    def bundle(self, n: int) -> Path:
        if n not in self._bundles:
            from aam_policy.compiler import compile_bundle

            out = self.root / f"bundle-{n}"
            compile_bundle(docs(self.intents(n)), out)
            self._bundles[n] = out
        return self._bundles[n]

    def requests(self, n: int) -> list[GeneratedRequest]:
        """`calls` labelled requests over the n-intent bundle, in the default mix."""
        if n not in self._requests:
            self._requests[n] = generate_requests(self.intents(n), self.config.calls)
        return self._requests[n]


# --- shared helpers --------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for dist in ("gordon-to-regorus", "aam-policy", "httpx", "aiohttp", "pydantic"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "not installed"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "regorus": versions["gordon-to-regorus"],
        "versions": versions,
        "opa": shutil.which("opa"),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3]
        if Path("/proc/loadavg").exists()
        else None,
    }


def aam_command() -> list[str]:
    """The installed `aam` script next to this interpreter, else `python -m aam_policy.cli`."""
    script = Path(sys.executable).parent / "aam"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "aam_policy.cli"]


def run_cli(
    args: Sequence[str], timeout: float = 300.0
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [*aam_command(), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise HarnessError(
            f"`aam {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    return elapsed, proc


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise HarnessError(f"no VmRSS for pid {pid}")


def verify_sample(
    decide: Callable[[dict[str, Any]], Any], intents: Sequence[GeneratedIntent]
) -> int:
    """Every scenario of the first few intents must give its intended outcome. Returns count."""
    checked = 0
    for gen in intents[:5]:
        for request in all_scenarios(gen):
            problem = check_outcome(request, decide(request.input))
            if problem:
                raise HarnessError(f"wrong decision from the system under test: {problem}")
            checked += 1
    return checked


def latency_runs(
    decide: Callable[[dict[str, Any]], Any], requests: Sequence[GeneratedRequest], config: Config
) -> list[dict[str, float]]:
    """`repeats` runs of `calls` sequential decisions; per-run p50/p99 (us) and errors."""
    inputs = [r.input for r in requests]
    n = len(inputs)
    for i in range(config.warmup):
        decide(inputs[i % n])
    runs = []
    for _ in range(config.repeats):
        results: list[Any] = [None] * n
        samples = time_calls(_recording(decide, inputs, results), n)
        stats = latency_stats(samples)
        stats["errors"] = float(
            sum(check_outcome(r, d) is not None for r, d in zip(requests, results, strict=True))
        )
        runs.append(stats)
    return runs


def _recording(
    decide: Callable[[dict[str, Any]], Any], inputs: Sequence[Any], results: list[Any]
) -> Callable[[int], None]:
    def call(i: int) -> None:
        results[i] = decide(inputs[i])

    return call


def _latency_text(fig: dict[str, float]) -> str:
    return f"p50 {fmt_us(fig['p50_us'])} / p99 {fmt_us(fig['p99_us'])}"


def _errors_note(fig: dict[str, float]) -> list[str]:
    return [f"{fig['errors']:.0f} wrong decisions per run (median)"] if fig.get("errors") else []


# --- P1 / P4 / P6: the sidecar ---------------------------------------------------------------


@contextlib.contextmanager
def embedded_sidecar(bundle: Path) -> Iterator[tuple[str, int]]:
    from aam_policy.sidecar import SidecarProcess

    with SidecarProcess(bundle, startup_timeout=120.0) as sidecar:
        yield sidecar.url, sidecar.pid


@contextlib.contextmanager
def opa_server(bundle: Path) -> Iterator[tuple[str, int]]:
    import httpx

    opa = shutil.which("opa")
    if opa is None:
        raise HarnessError("opa is not on PATH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [opa, "run", "--server", "--addr", f"127.0.0.1:{port}", "--bundle", str(bundle)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health?bundles", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError("opa run --server did not become healthy")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def hot_reloads(url: str, pid: int, ws: Workspace, count: int) -> None:
    """`count` forced reloads of the sidecar's bundle (SIGHUP), each awaited, with traffic."""
    import httpx

    from aam_policy.client import DecisionClient

    def activated() -> str:
        body = httpx.get(f"{url}/health?bundles", timeout=10).json()
        return str(body["bundles"]["aam"]["activated"])

    inputs = [r.input for r in ws.requests(BIG)]
    with DecisionClient(url, fail_mode="raise", timeout=10.0, retries=0) as client:
        for _ in range(count):
            before = activated()
            time.sleep(0.01)  # activation times are compared as text
            os.kill(pid, signal.SIGHUP)
            deadline = time.monotonic() + 120
            while activated() == before:
                if time.monotonic() > deadline:
                    raise HarnessError("the sidecar did not reload on SIGHUP")
                for request in inputs[:20]:
                    client.decide(request)
        for request in inputs[:300]:
            client.decide(request)


def http_latency(url: str, ws: Workspace, n: int) -> list[dict[str, float]]:
    from aam_policy.client import DecisionClient

    with DecisionClient(url, fail_mode="raise", timeout=10.0, retries=0) as client:
        verify_sample(client.decide, ws.intents(n))
        return latency_runs(client.decide, ws.requests(n), ws.config)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput_runs(
    url: str, ws: Workspace, n: int, server_pid: int | None = None
) -> list[dict[str, float]]:
    """`concurrency` AsyncDecisionClients, each deciding its share sequentially."""
    from aam_policy.client import AsyncDecisionClient

    config = ws.config
    requests = ws.requests(n)
    per_client = config.throughput_calls // config.concurrency

    async def client_loop(index: int) -> tuple[int, int]:
        errors = done = 0
        async with AsyncDecisionClient(url, fail_mode="raise", timeout=30.0, retries=0) as client:
            for j in range(per_client):
                request = requests[(index * per_client + j) % len(requests)]
                try:
                    decision = await client.decide(request.input)
                    errors += check_outcome(request, decision) is not None
                except Exception:
                    errors += 1
                done += 1
        return done, errors

    async def one_run() -> dict[str, float]:
        server_cpu = cpu_seconds(server_pid) if server_pid else 0.0
        client_cpu = time.process_time()
        start = time.perf_counter()
        outcomes = await asyncio.gather(*(client_loop(i) for i in range(config.concurrency)))
        elapsed = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu
        server_cpu = (cpu_seconds(server_pid) - server_cpu) if server_pid else 0.0
        done = sum(d for d, _ in outcomes)
        return {
            "decisions_per_s": done / elapsed,
            "decisions": float(done),
            "errors": float(sum(e for _, e in outcomes)),
            "seconds": elapsed,
            "client_cpu_share": client_cpu / elapsed,  # 1.0 = one core busy
            "server_cpu_share": server_cpu / elapsed,
        }

    runs = []
    asyncio.run(_warm(url, requests))
    for _ in range(config.repeats):
        runs.append(asyncio.run(one_run()))
    return runs


async def _warm(url: str, requests: Sequence[GeneratedRequest]) -> None:
    from aam_policy.client import AsyncDecisionClient

    async with AsyncDecisionClient(url, fail_mode="raise", timeout=30.0) as client:
        await client.decide_many([r.input for r in requests[:200]])


def measure_sidecar(ws: Workspace, selected: set[str]) -> list[Result]:
    config = ws.config
    p1 = Result(
        "P1",
        "DecisionClient -> embedded sidecar, sequential, 1,000 intents",
        target="p50 <= 1.0 ms, p99 <= 3 ms",
    )
    p4 = Result(
        "P4",
        f"sidecar throughput, {config.concurrency} concurrent async clients",
        target=">= 2,000 decisions/s, 0 errors",
    )
    p6 = Result("P6", "sidecar resident memory, 1,000-intent bundle", target="<= 150 MB")
    extra: dict[str, Any] = {}
    with embedded_sidecar(ws.bundle(BIG)) as (url, pid):
        rss_load = rss_mb(pid)
        if selected & {"P1", "P3", "P6"}:
            p1.runs["1000"] = http_latency(url, ws, BIG)
        rss_after_p1 = rss_mb(pid)
        if "P4" in selected:
            p4.runs["1000"] = throughput_runs(url, ws, BIG, pid)
        rss_end = rss_mb(pid)
        if "P6" in selected:
            hot_reloads(url, pid, ws, RELOADS)
            extra["rss_reloads"] = rss_mb(pid)
    if selected & {"P1", "P3"}:
        with embedded_sidecar(ws.bundle(SMALL)) as (url, pid):
            p1.runs["10"] = http_latency(url, ws, SMALL)
            extra["rss_10"] = rss_mb(pid)
    results = []
    if p1.runs:
        big = medians(p1.runs["1000"])
        p1.figures = {f"{k}@1000": v for k, v in big.items()}
        if "10" in p1.runs:
            p1.figures.update({f"{k}@10": v for k, v in medians(p1.runs["10"]).items()})
        p1.measured = _latency_text(big)
        p1.passed = big["p50_us"] <= 1000 and big["p99_us"] <= 3000 and big["errors"] == 0
        p1.notes += _errors_note(big)
        results.append(p1)
    if p4.runs:
        fig = medians(p4.runs["1000"])
        p4.figures = fig
        worst_errors = max(r["errors"] for r in p4.runs["1000"])
        p4.measured = f"{fig['decisions_per_s']:,.0f}/s, {worst_errors:.0f} errors"
        p4.passed = fig["decisions_per_s"] >= 2000 and worst_errors == 0
        p4.notes.append(
            f"CPU during the run: load generator {fig['client_cpu_share']:.0%} of a core, "
            f"sidecar {fig['server_cpu_share']:.0%} of a core (2 cores shared by both)"
        )
        results.append(p4)
    p6.figures = {
        "rss_mb_after_load": rss_load,
        "rss_mb_after_p1": rss_after_p1,
        "rss_mb_end": rss_end,
    }
    if "rss_10" in extra:
        p6.figures["rss_mb_10_intents"] = extra["rss_10"]
    peak = max(rss_load, rss_after_p1, rss_end)
    p6.measured = f"{rss_load:.0f} MB loaded, {rss_after_p1:.0f} MB after P1"
    p6.passed = peak <= 150
    if "rss_10" in extra:
        p6.notes.append(f"the same sidecar with the 10-intent bundle: {extra['rss_10']:.0f} MB")
    if "rss_reloads" in extra:
        p6.figures[f"rss_mb_after_{RELOADS}_reloads"] = extra["rss_reloads"]
        p6.notes.append(
            f"after {RELOADS} hot reloads of the bundle (SIGHUP) under traffic: "
            f"{extra['rss_reloads']:.0f} MB; the target is read on the fresh sidecar"
        )
    if "P6" in selected:
        results.append(p6)
    return results


def measure_opa(ws: Workspace, selected: set[str], reference: list[Result]) -> list[Result]:
    """P1 / P4 against `opa run --server` with the same bundle, and the ratio to ours."""
    row = Result("OPA", "P1 / P4 against `opa run --server`, same 1,000-intent bundle")
    if shutil.which("opa") is None:
        row.skipped = "opa not on PATH"
        row.measured = "not available (opa not on PATH)"
        return [row]
    with opa_server(ws.bundle(BIG)) as (url, _pid):
        if selected & {"P1", "P3"}:
            row.runs["P1"] = http_latency(url, ws, BIG)
        if "P4" in selected:
            row.runs["P4"] = throughput_runs(url, ws, BIG)
    ours = {r.id: r for r in reference}
    parts = []
    if "P1" in row.runs:
        fig = medians(row.runs["P1"])
        row.figures.update({f"P1_{k}": v for k, v in fig.items()})
        text = f"P1 {_latency_text(fig)}"
        if "P1" in ours:
            ratio = ours["P1"].figures["p50_us@1000"] / fig["p50_us"]
            row.figures["P1_p50_ratio_ours_over_opa"] = ratio
            text += f" (ours/opa p50 x{ratio:.2f})"
        parts.append(text)
    if "P4" in row.runs:
        fig = medians(row.runs["P4"])
        row.figures.update({f"P4_{k}": v for k, v in fig.items()})
        text = f"P4 {fig['decisions_per_s']:,.0f}/s"
        if "P4" in ours:
            ratio = ours["P4"].figures["decisions_per_s"] / fig["decisions_per_s"]
            row.figures["P4_rate_ratio_ours_over_opa"] = ratio
            text += f" (ours/opa x{ratio:.2f})"
        parts.append(text)
    row.measured = "; ".join(parts)
    return [row]


# --- P2: in-process ------------------------------------------------------------------------


def measure_local(ws: Workspace) -> list[Result]:
    from aam_policy.client import Decision, LocalDecisionClient
    from aam_policy.engine import RegorusEngine, load_policy

    p2 = Result(
        "P2", "LocalDecisionClient (embedded engine, no HTTP), 1,000 intents", target="p50 <= 60 us"
    )
    breakdown: dict[str, float] = {}
    for n in (BIG, SMALL):
        engine = RegorusEngine(load_policy([ws.bundle(n)]))
        client = LocalDecisionClient(engine, fail_mode="raise")
        verify_sample(client.decide, ws.intents(n))
        p2.runs[str(n)] = latency_runs(client.decide, ws.requests(n), ws.config)
        # where the time goes: the engine alone, then the Decision model alone
        inputs = [r.input for r in ws.requests(n)]
        raw = [engine.evaluate("aam/decision", i) for i in inputs]
        engine_runs = []
        model_runs = []
        evaluate = _recording(
            functools.partial(engine.evaluate, "aam/decision"), inputs, [None] * len(inputs)
        )
        validate = _recording(Decision.model_validate, raw, [None] * len(raw))
        outcomes = [r.outcome for r in ws.requests(n)]
        for _ in range(ws.config.repeats):
            samples = time_calls(evaluate, len(inputs))
            stats = latency_stats(samples)
            for outcome in sorted(set(outcomes)):
                share = [s for s, o in zip(samples, outcomes, strict=True) if o == outcome]
                stats[f"{outcome}_p50_us"] = latency_stats(share)["p50_us"]
            engine_runs.append(stats)
            model_runs.append(latency_stats(time_calls(validate, len(raw))))
        p2.runs[f"engine_evaluate_{n}"] = engine_runs
        p2.runs[f"decision_model_{n}"] = model_runs
        engine_medians = medians(engine_runs)
        for key, value in engine_medians.items():
            if key.endswith("p50_us"):
                breakdown[f"engine_{key}@{n}"] = value
        breakdown[f"model_validate_p50_us@{n}"] = medians(model_runs)["p50_us"]
        if n == BIG:
            entry = engine.policy.registry[inputs[0]["intent"]["id"]]
            floor = floor_p50_us(entry, inputs, ws.config.repeats)
            breakdown.update({f"floor_{k}": v for k, v in floor.items()})
    big = medians(p2.runs[str(BIG)])
    p2.figures = {f"{k}@1000": v for k, v in big.items()}
    p2.figures.update({f"{k}@10": v for k, v in medians(p2.runs[str(SMALL)]).items()})
    p2.figures.update(breakdown)
    p2.measured = _latency_text(big)
    p2.passed = big["p50_us"] <= 60 and big["errors"] == 0
    p2.notes.append(
        "breakdown at 1,000 intents: engine.evaluate alone p50 "
        f"{fmt_us(breakdown['engine_p50_us@1000'])} (allow "
        f"{fmt_us(breakdown['engine_allow_p50_us@1000'])}, escalate "
        f"{fmt_us(breakdown['engine_escalate_p50_us@1000'])}, deny "
        f"{fmt_us(breakdown['engine_deny_p50_us@1000'])}), Decision.model_validate alone p50 "
        f"{fmt_us(breakdown['model_validate_p50_us@1000'])}"
    )
    p2.notes.append(
        "engine floor, before any check: input in and a trivial rule out p50 "
        f"{fmt_us(breakdown['floor_input_and_rule_p50_us'])}, plus unpacking one intent's "
        f"entry {fmt_us(breakdown['floor_entry_unpacked_p50_us'])} (benchmarks/_floor.py)"
    )
    p2.notes += _errors_note(big)
    return [p2]


def measure_scaling(rows: list[Result]) -> list[Result]:
    by_id = {r.id: r for r in rows}
    p3 = Result(
        "P3", "cost vs policy size: p50 @1,000 / p50 @10 intents (P1, P2)", target="<= 1.25"
    )
    ratios = {}
    for pid in ("P1", "P2"):
        row = by_id.get(pid)
        if row is None or "p50_us@10" not in row.figures:
            continue
        ratios[pid] = row.figures["p50_us@1000"] / row.figures["p50_us@10"]
        # per-run ratios too, for the raw record
        p3.runs[pid] = [
            {"ratio": big["p50_us"] / small["p50_us"]}
            for big, small in zip(row.runs["1000"], row.runs["10"], strict=True)
        ]
    if not ratios:
        p3.skipped = "needs P1 and P2"
        return [p3]
    p3.figures = {f"{pid}_ratio": v for pid, v in ratios.items()}
    p3.measured = ", ".join(f"{pid} x{v:.2f}" for pid, v in ratios.items())
    p3.passed = all(v <= 1.25 for v in ratios.values())
    return [p3]


# --- P5: compile and test --------------------------------------------------------------------


def measure_build(ws: Workspace) -> list[Result]:
    from aam_policy.compiler import compile_bundle

    config = ws.config
    compile_row = Result(
        "P5a", "compile 1,000 intents (in-process / `aam compile` CLI)", target="<= 5 s"
    )
    test_row = Result("P5b", "`aam test rego <fixture bundle>` (CLI)", target="<= 5 s")
    intents = docs(ws.intents(BIG))
    yaml_dir = ws.root / "intents-1000"
    write_yaml(ws.intents(BIG), yaml_dir)
    inproc, cli = [], []
    for run in range(config.repeats):
        out = ws.root / f"compile-{run}"
        start = time.perf_counter()
        compile_bundle(intents, out)
        inproc.append({"seconds": time.perf_counter() - start})
        shutil.rmtree(out)
        seconds, _ = run_cli(["compile", str(yaml_dir), "-o", str(out)])
        cli.append({"seconds": seconds})
        shutil.rmtree(out)
    compile_row.runs = {"in_process": inproc, "cli": cli}
    a, b = median([r["seconds"] for r in inproc]), median([r["seconds"] for r in cli])
    compile_row.figures = {"in_process_s": a, "cli_s": b}
    compile_row.measured = f"{a:.2f} s / {b:.2f} s"
    compile_row.passed = max(a, b) <= 5
    from aam_policy.intents import load_intents

    start = time.perf_counter()
    loaded = load_intents([yaml_dir])
    load_s = time.perf_counter() - start
    if len(loaded) != BIG:
        raise HarnessError(f"load_intents read {len(loaded)} of {BIG} generated intents")
    compile_row.figures["load_intents_1000_yaml_s"] = load_s
    compile_row.notes.append(
        f"load_intents (YAML parse + schema + models) of the 1,000 files takes {load_s:.2f} s in "
        f"one process (one run); `aam compile` reads and renders in one worker per CPU"
    )

    fixture_bundle = ws.root / "fixture-bundle"
    run_cli(["compile", str(FIXTURE_INTENTS), "-o", str(fixture_bundle)])
    tests = []
    for _ in range(config.repeats):
        seconds, proc = run_cli(["test", "rego", str(fixture_bundle)])
        tests.append({"seconds": seconds})
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    test_row.runs = {"cli": tests}
    t = median([r["seconds"] for r in tests])
    test_row.figures = {"cli_s": t}
    test_row.measured = f"{t:.2f} s ({summary})"
    test_row.passed = t <= 5
    return [compile_row, test_row]


# --- P7: audit -------------------------------------------------------------------------------


def _decision_payload(i: int, outcome: str = "allow") -> dict[str, Any]:
    return {
        "decision_id": f"dec-{i:08d}",
        "request_id": f"req-{i:08d}",
        "tool": "payments.refund",
        "operation": "write",
        "fingerprint": f"{i:064x}",
        "outcome": outcome,
        "reasons": []
        if outcome == "allow"
        else [{"code": "escalation_required", "message": "refund over 100"}],
        "revision": "rev-bench",
        "intent_revision": "intent-rev-bench",
    }


def session_events(
    session: str, n: int
) -> list[tuple[str, str | None, dict[str, Any], str | None]]:
    """A realistic `n`-event session: open, decisions + actions, escalations, teardown."""
    human = "alice@example.com"
    items: list[tuple[str, str | None, dict[str, Any], str | None]] = [
        (
            "session.opened",
            session,
            {
                "human": human,
                "agent": "spiffe://example.org/agents/support-bot",
                "intent": "resolve-support-ticket",
                "purpose": "work the refund queue",
                "prompt": "Please refund the customer on ticket 42, card 4111 1111 1111 1111.",
                "expires_at_ns": 2_000_000_000_000_000_000,
                "ttl_seconds": 600,
            },
            human,
        ),
    ]
    i = 0
    while len(items) < n - 1:
        i += 1
        if i % 10 == 0 and len(items) < n - 6:
            apr = f"apr_{i:08d}"
            fp = f"{i:064x}"
            items += [
                (
                    "decision",
                    session,
                    _decision_payload(i, "escalate") | {"approval_id": apr},
                    human,
                ),
                (
                    "escalation.requested",
                    session,
                    {
                        "approval_id": apr,
                        "fingerprint": fp,
                        "tool": "payments.refund",
                        "approvers": ["role:payments-lead"],
                        "reason": "refund over 100",
                        "expires_at_ns": 2_000_000_000_000_000_000,
                    },
                    human,
                ),
                (
                    "escalation.approved",
                    session,
                    {
                        "approval_id": apr,
                        "approver": "bob@example.com",
                        "why": "customer is known",
                        "fingerprint": fp,
                        "grant_expires_at_ns": 2_000_000_000_000_000_000,
                    },
                    "bob@example.com",
                ),
                ("decision", session, _decision_payload(100_000_000 + i), human),
            ]
            items[-1][2]["fingerprint"] = fp
        else:
            items.append(("decision", session, _decision_payload(i), human))
        if len(items) < n - 1:
            fp = items[-1][2]["fingerprint"]
            items.append(
                (
                    "action.executed",
                    session,
                    {
                        "tool": "payments.refund",
                        "operation": "write",
                        "fingerprint": fp,
                        "status": "ok",
                        "result_summary": "refunded",
                    },
                    human,
                )
            )
    items.append(
        (
            "session.teardown",
            session,
            {
                "reason": "task complete",
                "kind": "completed",
                "actions_used": i,
                "tools_used": ["payments.refund"],
            },
            human,
        )
    )
    return items[:n]


def measure_audit(ws: Workspace) -> list[Result]:
    from aam_policy.audit import AuditStore, render_trace

    config = ws.config
    append_row = Result(
        "P7a",
        f"audit append, hash-chained, SQLite file (synchronous=FULL), {APPEND_WRITERS} writers",
        target=">= 5,000 events/s",
    )
    trace_row = Result(
        "P7b",
        f"`aam trace` of a {config.trace_events:,}-event session (CLI / in-process)",
        target="<= 1 s",
    )
    events = session_events("sess_append", config.append_events)
    # (label, synchronous, writer threads); every event is its own append() call
    setups = (("FULL", "FULL", APPEND_WRITERS), ("FULL_1", "FULL", 1), ("NORMAL_1", "NORMAL", 1))
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in setups}
    for _ in range(config.repeats):
        for label, sync, writers in setups:
            directory = Path(tempfile.mkdtemp(prefix="aam-bench-audit-", dir=ws.root))
            with AuditStore(directory / "audit.db", synchronous=sync) as store:
                elapsed = _append_in_threads(store, events, writers)
                if len(store) != len(events) or not store.verify().ok:
                    raise HarnessError("the audit store lost events or broke its chain")
            runs[label].append({"events_per_s": len(events) / elapsed, "seconds": elapsed})
            shutil.rmtree(directory)
    append_row.runs = runs
    rate, single, normal = (
        median([r["events_per_s"] for r in runs[label]]) for label, _, _ in setups
    )
    append_row.figures = {
        "events_per_s": rate,
        "events_per_s_one_writer": single,
        "events_per_s_one_writer_synchronous_normal": normal,
    }
    append_row.measured = f"{rate:,.0f} events/s"
    append_row.passed = rate >= 5000
    append_row.notes.append(
        f"one writer: {single:,.0f} events/s at FULL (one fsync per append), "
        f"{normal:,.0f} at NORMAL"
    )

    # a 10,000-event session in its own database, built in batches (setup, not timed)
    db = ws.root / "trace" / "audit.db"
    session = "sess_trace_bench"
    items = session_events(session, config.trace_events)
    with AuditStore(db, synchronous="NORMAL") as store:
        for start_at in range(0, len(items), 500):
            store.append_many(items[start_at : start_at + 500])
        if len(store) != config.trace_events:
            raise HarnessError("the trace session was not stored completely")
    cli, inproc = [], []
    lines = 0
    for _ in range(config.repeats):
        seconds, proc = run_cli(["trace", session, "--db", str(db)])
        lines = proc.stdout.count("\n")
        cli.append({"seconds": seconds})
        with AuditStore(db) as store:
            start = time.perf_counter()
            trace = store.trace(session)
            text = render_trace(trace)
            inproc.append({"seconds": time.perf_counter() - start})
        if not trace.found or not text:
            raise HarnessError("the trace came back empty")
    trace_row.runs = {"cli": cli, "in_process": inproc}
    c, p = median([r["seconds"] for r in cli]), median([r["seconds"] for r in inproc])
    trace_row.figures = {"cli_s": c, "in_process_s": p, "output_lines": float(lines)}
    trace_row.measured = f"{c:.2f} s / {p:.2f} s"
    trace_row.passed = c <= 1.0
    if trace.gaps:
        trace_row.notes.append(f"the trace flagged {len(trace.gaps)} gap(s): {trace.gaps[0]}")
    return [append_row, trace_row]


def _append_in_threads(store: Any, events: Sequence[Any], writers: int) -> float:
    """Seconds for `writers` threads to append `events` between them, one append() each."""
    shares = [events[i::writers] for i in range(writers)]
    start_together = threading.Barrier(writers + 1)
    failures: list[BaseException] = []

    def write(share: Sequence[Any]) -> None:
        start_together.wait()
        try:
            for type_, session, payload, actor in share:
                store.append(type_, session, payload, actor=actor)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    start_together.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise HarnessError(f"an audit append failed: {failures[0]!r}")
    return elapsed


# --- P8: Guard -----------------------------------------------------------------------------


def measure_guard(ws: Workspace) -> list[Result]:
    from benchmarks._guard import measure_guard as run

    return run(ws)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
