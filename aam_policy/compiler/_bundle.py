"""Intents -> bundle files in memory -> directory and tarball, atomically and reproducibly."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from aam_policy import __version__
from aam_policy._workers import map_in_workers
from aam_policy.compiler._errors import CompileError
from aam_policy.compiler._rego import package_name
from aam_policy.compiler._render import (
    registry_entry,
    render_intent_module,
    render_test_module,
)
from aam_policy.compiler._signing import SIGNATURES_FILE, SigningConfig, signatures_file
from aam_policy.compiler._validate import check_intent

MANIFEST = ".manifest"
DATA = "data.json"
ROOTS = ["aam"]
# Where an intent module holds the bundle revision: in its entry's JSON string, whose first
# key (break_glass) holds no string, so the first such key after the line's start is this one.
_ENTRY_LINE = b"\n\tintent := json.unmarshal("
_UNSTAMPED = b'\\"bundle_revision\\":\\"\\"'
_UNSTAMPED_DATA = b'{\n  "aam": {\n    "bundle": {\n      "revision": ""\n'


def _stamp_module(module: bytes, revision: str) -> bytes:
    at = module.index(_UNSTAMPED, module.index(_ENTRY_LINE))
    stamp = _UNSTAMPED[:-2] + revision.encode("ascii") + _UNSTAMPED[-2:]  # hex: no escaping
    return module[:at] + stamp + module[at + len(_UNSTAMPED) :]


def _data_stamp(revision: str) -> bytes:
    return _UNSTAMPED_DATA.replace(b'""', json.dumps(revision).encode())


@dataclass(frozen=True)
class CompiledBundle:
    """What `compile_bundle` wrote: the revision and every file (bundle path -> bytes)."""

    revision: str
    files: dict[str, bytes]


def core_rego_dir() -> Path:
    """The core Rego library: `rego/aam/core` in a source checkout, else the copy packaged in
    the wheel (`aam_policy/_rego/aam/core`, force-included by pyproject)."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "rego" / "aam" / "core"
    if checkout.is_dir():
        return checkout
    return here.parents[1] / "_rego" / "aam" / "core"


def core_files(root: Path | None = None) -> dict[str, bytes]:
    """`aam/core/<name>.rego` for every core module except its tests."""
    root = core_rego_dir() if root is None else root
    try:
        paths = sorted(
            p for p in root.glob("*.rego") if p.is_file() and not p.name.endswith("_test.rego")
        )
        files = {f"aam/core/{p.name}": p.read_bytes() for p in paths}
    except OSError as exc:
        raise CompileError(f"cannot read the core library in {root}: {exc}") from None
    if not files:
        raise CompileError(f"the core Rego library is missing: no *.rego in {root}")
    return files


def json_bytes(document: Any) -> bytes:
    """The one JSON serialization of the bundle: sorted keys, 2-space indent, UTF-8, newline."""
    try:
        text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise CompileError(f"cannot serialize bundle data: {exc}") from None


def bundle_revision(files: dict[str, bytes]) -> str:
    """sha256 over every file but `.manifest`, in path order, each as
    `path \\n length \\n content` so no two different bundles hash alike."""
    digest = hashlib.sha256()
    for path in sorted(files):
        if path == MANIFEST:
            continue
        content = files[path]
        digest.update(f"{path}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


class _Rendered(NamedTuple):
    ident: str
    entry: dict[str, Any]  # data.aam.registry[ident]
    module: bytes  # with an empty bundle revision
    test: bytes | None  # None without examples


def _render_intent(intent: Any) -> _Rendered:
    """One intent checked and rendered: independent of every other (so done in workers)."""
    original, doc = check_intent(intent)
    ident = doc["metadata"]["id"]
    entry = registry_entry(original, doc)
    module = _utf8(render_intent_module(doc, entry, ""), ident)
    test = _utf8(render_test_module(doc), ident) if doc["spec"]["examples"] else None
    return _Rendered(ident, entry, module, test)


def render_bundle(
    intents: Sequence[Any], signing: SigningConfig | None = None, *, jobs: int = 1
) -> CompiledBundle:
    """Every file of the bundle, in memory (with `.signatures.json` when `signing`), the
    intents rendered in `jobs` worker processes when > 1 (same bytes). Raises CompileError;
    touches no file."""
    rendered: dict[str, _Rendered] = {}
    for item in map_in_workers(_render_intent, intents, jobs):
        if item.ident in rendered:
            raise CompileError(f"intent {item.ident!r} is defined more than once")
        rendered[item.ident] = item

    registry = {ident: rendered[ident].entry for ident in sorted(rendered)}
    tests = {
        f"aam/tests/{package_name(ident)}_test.rego": item.test
        for ident, item in rendered.items()
        if item.test is not None
    }

    # The revision is stamped into data.json and into every intent module (which read it
    # without a `data.` lookup): hash the bundle with an empty revision, then stamp it.
    # Modules are rendered once; the stamp fills the empty revision in the entry's JSON string
    # (see _stamp_module).
    modules = {
        f"aam/intents/{package_name(ident)}.rego": item.module for ident, item in rendered.items()
    }

    # data.json likewise: serialized once, its first line holding a revision is the bundle's
    # ("bundle" sorts before "registry"); json_bytes is the slow, indenting encoder.
    data = json_bytes({"aam": {"bundle": {"revision": ""}, "registry": registry}})

    def stamped(revision: str) -> dict[str, bytes]:
        files = {**core_files(), **tests}
        for path, module in modules.items():
            files[path] = _stamp_module(module, revision)
        files[DATA] = data.replace(_UNSTAMPED_DATA, _data_stamp(revision), 1)
        return files

    revision = bundle_revision(stamped(""))
    files = stamped(revision)
    files[MANIFEST] = json_bytes(
        {
            "revision": revision,
            "roots": ROOTS,
            "rego_version": 1,
            "metadata": {"compiler": f"aam-policy {__version__}", "intents": sorted(rendered)},
        }
    )
    if signing is not None:  # last: it covers every other file, and stays out of the revision
        files[SIGNATURES_FILE] = signatures_file(files, signing)
    return CompiledBundle(revision=revision, files=dict(sorted(files.items())))


def _utf8(text: str, ident: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate that slipped past the checks
        raise CompileError(f"intent {ident!r}: text is not valid Unicode: {exc}") from None


def tarball_bytes(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of the bundle, byte-identical for identical files: sorted members, no
    directory entries, mtime 0, owner 0/0 without names, mode 0644, no gzip name or time."""
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for path in sorted(files):
            content = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


# --- writing -----------------------------------------------------------------------------------


def _check_targets(out_dir: Path, tarball: Path | None) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise CompileError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        # the whole directory is replaced: never do that to something that is not a bundle
        raise CompileError(
            f"output {out_dir} is a non-empty directory without a {MANIFEST}: "
            "refusing to replace it with a bundle"
        )
    if tarball is not None:
        if tarball.is_dir():
            raise CompileError(f"tarball {tarball} is a directory")
        if tarball.resolve().is_relative_to(out_dir.resolve()):
            raise CompileError(f"tarball {tarball} must not be inside the output directory")


def write_bundle(bundle: CompiledBundle, out_dir: Path, tarball: Path | None = None) -> None:
    """Write the directory (and tarball) so that readers see the old bundle or the new one,
    never a mix, and a failure leaves the old one and no temporary files behind.

    Files are staged in hidden siblings of the targets (same filesystem, so renames are
    atomic); the old directory is moved aside, the new one renamed in, then the tarball
    replaced; any failure undoes the swap.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink():  # replace what the link points to, keep the link
        out_dir = Path(os.path.realpath(out_dir))
    tarball = Path(tarball) if tarball is not None else None
    _check_targets(out_dir, tarball)
    packed = tarball_bytes(bundle.files) if tarball is not None else None

    staging: Path | None = None
    tar_tmp: Path | None = None
    backup: Path | None = None
    swapped = done = False
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        for path, content in bundle.files.items():
            target = staging.joinpath(*path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        if tarball is not None and packed is not None:
            tarball.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{tarball.name}.", dir=tarball.parent)
            tar_tmp = Path(name)
            with os.fdopen(fd, "wb") as handle:
                handle.write(packed)
                handle.flush()
                os.fsync(handle.fileno())
            tar_tmp.chmod(0o644)

        if out_dir.exists():
            backup = out_dir.parent / f".{out_dir.name}.{secrets.token_hex(6)}.old"
            os.rename(out_dir, backup)
        os.rename(staging, out_dir)
        swapped, staging = True, None
        if tar_tmp is not None and tarball is not None:
            os.replace(tar_tmp, tarball)
            tar_tmp = None
        done = True
    except OSError as exc:
        if swapped:  # put the previous bundle back
            with contextlib.suppress(OSError):
                staging = out_dir.parent / f".{out_dir.name}.{secrets.token_hex(6)}.failed"
                os.rename(out_dir, staging)
        if backup is not None:
            with contextlib.suppress(OSError):
                os.rename(backup, out_dir)
                backup = None
        raise CompileError(f"cannot write the bundle: {exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if tar_tmp is not None:
            with contextlib.suppress(OSError):
                tar_tmp.unlink()
        if backup is not None and done:
            shutil.rmtree(backup, ignore_errors=True)


def compile_bundle(
    intents: Sequence[Any],
    out_dir: Path,
    tarball: Path | None = None,
    *,
    signing: SigningConfig | None = None,
    jobs: int = 1,
) -> CompiledBundle:
    """Compile intents (`Intent` models, `LoadedIntent`s or their dicts) into an OPA bundle
    directory `out_dir` and, if given, a `tarball` (.tar.gz) with the same files; signed
    (`.signatures.json`, OPA's format) when `signing` (see `signing_config`) is given.
    `jobs` > 1 renders the intents in that many worker processes (the bytes are the same).

    Everything is rendered in memory first; a `CompileError` means nothing was written and a
    previous bundle at `out_dir` / `tarball` is untouched.
    """
    bundle = render_bundle(intents, signing, jobs=jobs)
    write_bundle(bundle, out_dir, tarball)
    return bundle
