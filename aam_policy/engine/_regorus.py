"""The embedded engine: regorus (a Rego interpreter in Rust) in-process.

Thread model, measured on regorus 0.13 (the engine tests pin each point down):

* every regorus object is pyo3 `unsendable`: touching an Engine from any thread other than
  the one that created it panics, so engines cannot be pooled across threads;
* an Engine is stateful (`set_input` then `eval_*`), so one engine cannot serve two
  evaluations at once;
* regorus keeps the GIL while evaluating, so threads get safety from this class, not
  parallelism (scale CPU-bound decision load with processes).

Hence each thread owns its engines, kept in one module-level `threading.local` registry keyed
by the owning PolicySet / RegorusEngine (held by weak reference): the thread that loaded the
policy reuses the engine built while validating it, any other thread parses the modules once
on its first call (a thread pool pays that once per worker), and evaluation needs no lock.
Engines are also *dropped* on their own thread (pyo3 leaks, with a warning, an unsendable
object dropped elsewhere): entries of collected owners are purged when the thread next builds
an engine, or when it exits. So replacing a RegorusEngine on bundle reload leaks nothing.

Measured alternatives: a fresh `clone()` per call costs ~2.5x a call on a warm per-thread
engine (a clone starts with cold caches); a single shared engine is impossible (see above).
regorus' compiled VM (`Program`/`Rvm`) decides a compiled intent ~2x faster (95 against 188 us
per decision at 10 intents, 114 against 232 us at 1,000, JSON in and out included) but is not
used: in 0.13 it gives wrong answers. `x := <undefined>` binds and the body goes on; an `else`
after a body that iterates and fails is skipped; rule conflicts come back undefined. Worst,
after a comprehension whose body stops at an undefined rule (`session` when a request has
none), the next comprehension of the same rule goes wrong: in
`r := union({{"a" | sess; sess.human == input.actor.human.id}, {"b" | input.actor.agent.id in
["x"]}})`, with `sess` undefined and the agent id "x", it gives `set()` where Rego gives {"b"},
so a deny reason can vanish; with the comprehension bound in a body instead, it loops until its
25,000-instruction limit. It also refuses lines over 1,024 columns and overflows its 255
registers on one program for 1,000 intents.
Per call: one `set_input`, one `eval_rule_as_json`, one `json.loads`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

# Read by regorus' Rust runtime, so set before it loads (an explicit setting wins):
# * every regorus error is an anyhow error, which captures a stack backtrace when
#   RUST_BACKTRACE is set (as on some machines); we keep only the message, and the first
#   capture symbolizes the library: ~48 MB and milliseconds, measured on a 1,000-intent bundle;
# * regorus allocates with mimalloc, which by default commits its arenas eagerly, on huge
#   pages where the kernel allows: ~20 MB more resident for the same bundle;
# * and returns freed memory to the OS only after a delay, which a server whose thread keeps
#   allocating seldom reaches: after hot reloads of a 1,000-intent bundle its RSS settled at
#   192-234 MB, 151-182 MB with immediate purging (decision latency and throughput unchanged
#   within the noise).
os.environ.setdefault("RUST_LIB_BACKTRACE", "0")
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

import regorus

from aam_policy.engine._engine import (
    DECISION_PATH,
    EvaluationError,
    parse_path,
    rego_ref,
)
from aam_policy.engine._policy import (
    REGORUS_MAX_COL,
    REGORUS_MAX_LINES,
    PolicyLoadError,
    PolicySet,
    split_regorus_error,
    within_roots,
)

if TYPE_CHECKING:
    from aam_policy.engine._testing import TestReport

# What eval_rule_as_json returns for an undefined rule (a JSON string, so it is re-checked).
UNDEFINED_JSON = '"<undefined>"'
_NOT_A_RULE = "not a valid rule path"
_PACKAGE = re.compile(r"^\s*package\s", re.MULTILINE)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_CACHED_PATHS = 1024
_NO_INTENT_RULE = "data.aam.core.no_intent_decision"
# found in the module text, not by evaluating: an engine's first evaluation prepares every
# module, which for a 1,000-intent bundle costs ~140 MB
_NO_INTENT_HEAD = re.compile(r"^no_intent_decision\s*:=", re.MULTILINE)
_CORE_PACKAGE = re.compile(r"^package\s+aam\.core\s*$", re.MULTILINE)


def new_engine() -> regorus.Engine:
    """A regorus Engine with limits raised to what OPA accepts (long generated lines)."""
    engine = regorus.Engine()
    engine.set_policy_length_config(
        max_col=REGORUS_MAX_COL,
        max_file_bytes=64 * 1024 * 1024,
        max_lines=REGORUS_MAX_LINES,
    )
    return engine


def regorus_error(exc: BaseException, default_path: str | None = None) -> PolicyLoadError:
    path, line, column, message = split_regorus_error(str(exc))
    return PolicyLoadError(message, path or default_path, line, column)


_THREAD = threading.local()


def _thread_engines() -> dict[int, tuple[weakref.ref[Any], regorus.Engine]]:
    try:
        return _THREAD.engines
    except AttributeError:
        engines: dict[int, tuple[weakref.ref[Any], regorus.Engine]] = {}
        _THREAD.engines = engines
        return engines


def thread_engine(owner: object, build: Callable[[], regorus.Engine]) -> regorus.Engine:
    """This thread's engine for `owner`, built by `build()` on first use."""
    engines = _thread_engines()
    entry = engines.get(id(owner))
    if entry is not None and entry[0]() is owner:
        return entry[1]
    # Drop engines whose owner is gone, here on the thread that created them.
    for key in [key for key, (ref, _) in engines.items() if ref() is None]:
        del engines[key]
    engine = build()
    engines[id(owner)] = (weakref.ref(owner), engine)
    return engine


def forget_thread_engine(owner: object) -> None:
    _thread_engines().pop(id(owner), None)


def is_test_module(path: str) -> bool:
    """OPA's convention: tests live in `*_test.rego` files."""
    return path.endswith("_test.rego")


def base_engine(policy: PolicySet) -> regorus.Engine:
    """This thread's engine for deciding: every module but the tests, the data, no input.

    Test modules are left out: no decision reads them, and in a compiled bundle they are the
    bulk of the Rego (a full request literal per example), so loading them would roughly
    double what an engine costs to parse and, on its first evaluation, to prepare.
    """
    return thread_engine(policy, lambda: build_engine(policy, tests=False))


def build_engine(policy: PolicySet, *, tests: bool) -> regorus.Engine:
    """A new engine with the policy's modules (with or without `*_test.rego`) and data."""
    steps = build_engine_in_steps(policy, tests=tests)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def base_engine_in_steps(policy: PolicySet) -> Generator[None, None, None]:
    """Build this thread's `base_engine(policy)` one module per step.

    A server that must build on the thread it serves from (regorus engines are bound to
    their thread) yields to its event loop between steps instead of stalling for the whole
    parse (~0.1 s for a 1,000-intent bundle).
    """
    engine = yield from build_engine_in_steps(policy, tests=False)
    thread_engine(policy, lambda: engine)


def build_engine_in_steps(
    policy: PolicySet, *, tests: bool
) -> Generator[None, None, regorus.Engine]:
    """`build_engine`, yielding after each module added."""
    engine = new_engine()
    for module in policy.modules:
        if not tests and is_test_module(module.path):
            continue
        try:
            package = engine.add_policy(module.path, module.text)
        except RuntimeError as exc:
            raise regorus_error(exc, module.path) from None
        parts = package.split(".")[1:]  # "data.aam.core" -> ["aam", "core"]
        if not within_roots(parts, module.roots):
            match = _PACKAGE.search(module.text)
            line = module.text.count("\n", 0, match.start()) + 1 if match else None
            raise PolicyLoadError(
                f"package {'.'.join(parts)} is outside the manifest roots {list(module.roots)}",
                module.path,
                line,
            )
        yield
    try:
        engine.add_data(policy.data)
    except RuntimeError as exc:
        raise PolicyLoadError(f"data: {split_regorus_error(str(exc))[3]}") from None
    return engine


def evaluate_on(engine: regorus.Engine, query: str, is_rule: bool = True) -> Any:
    """Evaluate the ref `query` on `engine`; JSON value or None when undefined.

    Raises RuntimeError from regorus on evaluation errors.
    """
    if is_rule:
        raw = engine.eval_rule_as_json(query)
        if raw != UNDEFINED_JSON:
            return json.loads(raw)
        # A rule whose value is the string "<undefined>" looks the same: ask again, precisely.
    result = json.loads(engine.eval_query_as_json(query)).get("result") or []
    return result[0]["expressions"][0]["value"] if result else None


class RegorusEngine:
    """The embedded engine. Safe to share between threads (see the module docstring)."""

    kind = "regorus"

    def __init__(self, policy: PolicySet) -> None:
        self.policy = policy
        base = base_engine(policy)
        packages = set(base.get_packages())
        # "aam/decision" for a registered intent goes straight to that intent's compiled
        # decision: same value as data.aam.decision by construction, but the cost does not
        # depend on how many intents the bundle holds.
        self._dispatch: dict[str, str] = {}
        for intent_id, entry in policy.registry.items():
            package = entry.get("package") if isinstance(entry, dict) else None
            if (
                isinstance(package, str)
                and _IDENT.match(package)
                and f"data.aam.intents.{package}" in packages
            ):
                self._dispatch[intent_id] = f"data.aam.intents.{package}.decision"
        # An id the bundle does not define gets the core's no-intent decision plus the bundle
        # revision, exactly what data.aam.decision's second rule builds, without the `data.`
        # lookups that cost regorus time in proportion to the modules loaded (a generic query
        # on a 1,000-intent bundle takes ~0.25 s: an unknown id must not be a way to burn CPU).
        self._no_intent: tuple[str, str] | None = None
        aam = policy.data.get("aam") if isinstance(policy.data, dict) else None
        bundle = aam.get("bundle") if isinstance(aam, dict) else None
        revision = bundle.get("revision") if isinstance(bundle, dict) else None
        if self._dispatch and any(
            _CORE_PACKAGE.search(m.text) and _NO_INTENT_HEAD.search(m.text) for m in policy.modules
        ):
            self._no_intent = (_NO_INTENT_RULE, revision or "")
        self._queries: dict[str, tuple[tuple[str, ...], str]] = {}
        self._not_rules: set[str] = set()

    @property
    def revision(self) -> str:
        return self.policy.revision

    def __repr__(self) -> str:
        return f"RegorusEngine(modules={len(self.policy.modules)}, revision={self.revision!r})"

    def _worker(self) -> regorus.Engine:
        return thread_engine(self, lambda: base_engine(self.policy).clone())

    def _query(self, path: str) -> tuple[tuple[str, ...], str]:
        cached = self._queries.get(path)
        if cached is None:
            parts = parse_path(path)
            cached = (parts, rego_ref(parts))
            if len(self._queries) < _MAX_CACHED_PATHS:
                self._queries[path] = cached
        return cached

    def evaluate(self, path: str, input: Any = None) -> Any:
        """Value of the document at `path` for `input`; None when undefined.

        Raises `EvaluationError` for Rego runtime errors (conflicts, type errors in builtins)
        and for an input that is not JSON-like.
        """
        parts, query = self._query(path)
        if parts == DECISION_PATH and isinstance(input, dict):
            intent = input.get("intent")
            intent_id = intent.get("id") if isinstance(intent, dict) else None
            dispatched = self._dispatch.get(intent_id) if isinstance(intent_id, str) else None
            if dispatched is not None:
                query = dispatched
            elif self._no_intent is not None:
                return self._no_intent_decision(input, path)
        if input is None:
            # input stays undefined, as in OPA without input: a fresh clone (sub-microsecond)
            engine = base_engine(self.policy).clone()
        else:
            engine = self._worker()
            try:
                engine.set_input(input)
            except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
                raise EvaluationError(f"input is not a JSON document: {exc}", path) from None
        try:
            return evaluate_on(engine, query, query not in self._not_rules)
        except RuntimeError as exc:
            text = str(exc)
            if _NOT_A_RULE in text:
                # a package, a data document or a missing path: answered by a query instead
                self._not_rules.add(query)
                return self._evaluate_query(engine, query, path)
            raise EvaluationError(_describe(text), path) from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a pyo3 PanicException derives from BaseException
            forget_thread_engine(self)  # never reuse an engine after a panic
            raise EvaluationError(f"engine failure: {exc}", path) from None

    def _no_intent_decision(self, input: dict[str, Any], path: str) -> Any:
        assert self._no_intent is not None
        query, revision = self._no_intent
        engine = self._worker()
        try:
            engine.set_input(input)
            decision = evaluate_on(engine, query)
        except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
            raise EvaluationError(f"cannot decide for an unknown intent: {exc}", path) from None
        if isinstance(decision, dict) and isinstance(decision.get("policy"), dict):
            decision["policy"]["revision"] = revision
        return decision

    def _evaluate_query(self, engine: regorus.Engine, query: str, path: str) -> Any:
        try:
            return evaluate_on(engine, query, is_rule=False)
        except RuntimeError as exc:
            raise EvaluationError(_describe(str(exc)), path) from None

    def run_tests(self, run: str | None = None) -> TestReport:
        from aam_policy.engine._testing import run_regorus_tests

        return run_regorus_tests(self.policy, run=run)


def _describe(text: str) -> str:
    path, line, column, message = split_regorus_error(text)
    if path is None:
        return message
    return f"{path}:{line}:{column}: {message}"
