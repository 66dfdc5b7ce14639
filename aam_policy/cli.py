"""The `aam` command.

Exit codes: 0 success, 1 a check that ran and failed (tests, verify), 2 bad input or usage.
Each command imports what it needs lazily so `aam validate` does not pay for the HTTP stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input detected by the CLI itself; printed without a traceback."""


def _fail(message: str) -> int:
    print(f"aam: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# --- authoring: validate / schema / compile ---------------------------------------------------


def _cmd_validate(args: argparse.Namespace) -> int:
    from aam_policy.intents import IntentValidationError, load_intents

    try:
        loaded = load_intents(args.paths)
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
    from aam_policy.compiler import CompileError, compile_bundle
    from aam_policy.intents import IntentValidationError, load_intents

    try:
        loaded = load_intents(args.intents)
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
        )
    except CompileError as exc:
        return _fail(f"compile failed, nothing written: {exc}")
    print(
        f"compiled {len(loaded)} intent(s) into {args.output}"
        + (f" and {args.tarball}" if args.tarball else "")
        + f" (revision {bundle.revision[:12]}, {len(bundle.files)} files)"
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
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("schema", help="print the intent template JSON Schema")
    p.set_defaults(handler=_cmd_schema)

    p = sub.add_parser("compile", help="compile intent templates into an OPA bundle")
    p.add_argument("intents", nargs="+", help="intent files or directories")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    p.add_argument("--tarball", help="also write bundle.tar.gz here")
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


def _open_audit(db: str):  # -> AuditStore
    from aam_policy.audit import AuditStore

    if not Path(db).is_file():
        raise UsageError(f"{db}: no such audit database")
    return AuditStore(db)


def _cmd_trace(args: argparse.Namespace) -> int:
    from aam_policy.audit import render_trace

    with _open_audit(args.db) as store:
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
    with _open_audit(args.db) as store:
        result = store.verify()
    print(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def _register_runtime(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sidecar",
        help="run the OPA-compatible decision sidecar (flags: aam sidecar -- --help)",
        add_help=False,
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
    p.add_argument("--db", default="aam-audit.db")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_trace)

    p = sub.add_parser("audit", help="audit store commands")
    audit_sub = p.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    v = audit_sub.add_parser("verify", help="check the hash chain; names the first bad event")
    v.add_argument("--db", default="aam-audit.db")
    v.set_defaults(handler=_cmd_audit_verify)


_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_register_runtime]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
