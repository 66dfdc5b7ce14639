"""`python -m aam_policy.sidecar`: run the decision sidecar (what `aam sidecar` runs).

Exit status: 0 after SIGTERM/SIGINT (in-flight requests finished), 1 when it cannot start
(bundle does not load, address in use, non-loopback address without --allow-remote), 2 for
usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ._decision_log import DEFAULT_MASKS, LogIngest
from ._errors import SidecarError
from ._server import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_LOG_BODY_BYTES,
    DEFAULT_PORT,
    parse_addr,
    serve,
)

_SIZE = re.compile(r"^\s*(\d+)\s*([kKmM]i?[bB]?)?\s*$")


def parse_size(text: str) -> int:
    """Bytes: "1048576", "512k", "1MiB", "8M"."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 1048576, 512KiB, 1MiB)")
    unit = (match[2] or "").lower()[:1]
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label {text!r} must be KEY=VALUE")
    return key, value


def load_callable(spec: str) -> LogIngest:
    """ "package.module:function" -> the callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SidecarError(f"--log-ingest {spec!r} must be MODULE:CALLABLE")
    try:
        target: object = importlib.import_module(module_name)
        for name in attr.split("."):
            target = getattr(target, name)
    except (ImportError, AttributeError) as exc:
        raise SidecarError(f"--log-ingest {spec!r}: {exc}") from None
    if not callable(target):
        raise SidecarError(f"--log-ingest {spec!r} is not callable")
    return target  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aam_policy.sidecar",
        description="OPA-REST-compatible decision sidecar over the embedded engine.",
    )
    parser.add_argument(
        "--bundle",
        type=Path,
        help="bundle directory or .tar.gz to serve and watch (omit: empty policy, e.g. for "
        "`aam push`)",
    )
    parser.add_argument(
        "--addr",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        help="HOST:PORT to listen on; port 0 picks a free port (default %(default)s)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --addr (the API has no authentication)",
    )
    parser.add_argument(
        "--engine",
        default="regorus",
        choices=("regorus", "opa", "auto"),
        help="policy engine (default regorus; opa runs one `opa eval` per decision)",
    )
    parser.add_argument("--no-watch", action="store_true", help="do not poll the bundle")
    parser.add_argument(
        "--reload-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="bundle polling interval (default 1.0); SIGHUP reloads at once",
    )
    parser.add_argument(
        "--max-body",
        type=parse_size,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="SIZE",
        help="largest request body accepted, else 413 (default 1MiB)",
    )
    parser.add_argument(
        "--max-log-body",
        type=parse_size,
        default=DEFAULT_MAX_LOG_BODY_BYTES,
        metavar="SIZE",
        help="largest POST /logs upload, compressed and decompressed (default 8MiB)",
    )
    parser.add_argument(
        "--decision-log", type=Path, metavar="FILE", help="append decision-log events (JSONL)"
    )
    parser.add_argument(
        "--audit-db",
        type=Path,
        metavar="FILE",
        help="also record each decision in this hash-chained audit store (aam trace reads it)",
    )
    parser.add_argument(
        "--mask",
        action="append",
        default=[],
        metavar="POINTER",
        help="erase this JSON pointer (/input/... or /result/...) from decision-log events; "
        f"repeatable; added to the defaults ({', '.join(DEFAULT_MASKS)})",
    )
    parser.add_argument(
        "--no-default-masks", action="store_true", help="do not apply the default masks"
    )
    parser.add_argument(
        "--log-ingest",
        metavar="MODULE:CALLABLE",
        help="callable receiving each POST /logs upload (a list of events); default: append "
        "to --decision-log, else drop",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        metavar="FILE",
        help='write {"url", "host", "port", "pid", "revision"} here once listening',
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="how long SIGTERM waits for in-flight requests (default 10)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        metavar="PID",
        help="stop when this process is no longer the parent (used by SidecarProcess)",
    )
    parser.add_argument(
        "--label", type=_label, action="append", default=[], metavar="KEY=VALUE",
        help="extra decision-log label",
    )  # fmt: skip
    parser.add_argument(
        "--verification-key",
        metavar="KEY",
        help="serve only bundles signed with this key (as opa run): PEM public key file for "
        "RS*/PS*/ES*, secret or file holding it for HS*",
    )
    parser.add_argument(
        "--verification-key-id",
        default="default",
        metavar="ID",
        help="name of the verification key (default %(default)s)",
    )
    parser.add_argument(
        "--signing-alg",
        default="RS256",
        metavar="ALG",
        help="algorithm bundles are signed with (default %(default)s)",
    )
    parser.add_argument("--scope", default="", help="scope the bundle signature must carry")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level on stderr (default INFO)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = parse_addr(args.addr)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    masks = tuple(args.mask) if args.no_default_masks else (*DEFAULT_MASKS, *args.mask)
    try:
        log_ingest = load_callable(args.log_ingest) if args.log_ingest else None
        serve(
            args.bundle,
            host,
            port,
            log_ingest=log_ingest,
            allow_remote=args.allow_remote,
            engine=args.engine,
            watch=not args.no_watch,
            reload_interval=args.reload_interval,
            max_body_bytes=args.max_body,
            max_log_body_bytes=args.max_log_body,
            decision_log=args.decision_log,
            audit_db=args.audit_db,
            masks=masks,
            ready_file=args.ready_file,
            shutdown_timeout=args.shutdown_timeout,
            parent_pid=args.parent_pid,
            labels=dict(args.label),
            verification_key=args.verification_key,
            verification_key_id=args.verification_key_id,
            signing_alg=args.signing_alg,
            scope=args.scope,
        )
    except (SidecarError, ValueError) as exc:
        logging.getLogger("aam_policy.sidecar").error("%s", exc)
        print(f"aam sidecar: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
