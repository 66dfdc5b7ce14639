"""Loading policy: bundle directories, bundle tarballs and plain Rego trees -> `PolicySet`.

The layout rules follow OPA's bundle format so that `opa` and the embedded engine see the same
documents: `.manifest` at the bundle root, `data.json` / `data.yaml` files at any depth merged
at their directory's path, every `*.rego` file a module. Hidden files and directories are
skipped (except the root `.manifest`), so editor and VCS droppings never become policy.

A module whose bytes are identical to one already loaded is skipped: `aam test rego build/bundle`
then loads the core library once although the compiled bundle holds a copy of it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import yaml

from aam_policy.engine._engine import EngineError

if TYPE_CHECKING:
    from aam_policy.engine._verify import VerificationConfig

# Limits for tarballs. A bundle is small text; these only stop hostile or corrupt archives
# (decompression bombs, millions of entries) from exhausting memory.
MAX_TARBALL_MEMBERS = 10_000
MAX_TARBALL_BYTES = 128 * 1024 * 1024  # total uncompressed bytes read from one tarball
MAX_FILE_BYTES = 16 * 1024 * 1024  # one module or data file, on disk or in a tarball

# regorus rejects lines over 1024 columns and files over 20000 lines by default; generated
# Rego with long JSON-encoded strings can exceed that, and OPA has no such limits.
REGORUS_MAX_COL = 1 << 20
REGORUS_MAX_LINES = 1_000_000

_DATA_FILES = frozenset({"data.json", "data.yaml", "data.yml"})
_TARBALL_SUFFIXES = (".tar.gz", ".tgz")
_REGORUS_LOCATION = re.compile(r"-->\s*(?P<path>.+?):(?P<line>\d+):(?P<col>\d+)")
_REGORUS_ERROR = re.compile(r"^error:\s*(?P<msg>.+)$", re.MULTILINE)


class PolicyLoadError(EngineError):
    """Policy could not be loaded: I/O, bad tarball, bad JSON/YAML, Rego syntax, conflicts.

    `str()` is `path:line:column: message` (line/column when known), like a compiler error.
    """

    def __init__(
        self,
        message: str,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or ""
        if where and self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}" if where else self.message


@dataclass(frozen=True)
class Module:
    """One Rego source file.

    `path` is what messages show (a file on disk, or `tarball/member` inside an archive);
    `name` is the path relative to its bundle or directory root, as OPA would name it.
    """

    path: str
    name: str
    text: str
    # the manifest roots of the bundle the module came from ("" = anywhere)
    roots: tuple[str, ...] = ("",)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A bundle's `.manifest` (OPA format)."""

    source: str
    revision: str = ""
    roots: tuple[str, ...] = ("",)
    rego_version: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class PolicySet:
    """Everything an engine needs: modules (deduplicated), merged data, manifests.

    Immutable once loaded; engines build their evaluators from it.
    """

    modules: tuple[Module, ...]
    data: dict[str, Any]
    manifests: tuple[Manifest, ...] = ()
    sources: tuple[str, ...] = ()
    # (skipped path, identical module kept) for every module dropped as a byte-identical copy
    duplicates: tuple[tuple[str, str], ...] = ()

    @property
    def revision(self) -> str:
        """The bundle revision ("" without a manifest; comma-joined if several bundles)."""
        revisions = [m.revision for m in self.manifests if m.revision]
        return ",".join(dict.fromkeys(revisions))

    @property
    def registry(self) -> dict[str, Any]:
        """`data.aam.registry` (intent id -> registry entry), empty when absent."""
        aam = self.data.get("aam")
        registry = aam.get("registry") if isinstance(aam, dict) else None
        return registry if isinstance(registry, dict) else {}


def load_policy(
    paths: Sequence[str | Path] | str | Path,
    verification: VerificationConfig | None = None,
    *,
    tests: bool = True,
) -> PolicySet:
    """Load bundle directories, `.tar.gz` bundles, Rego directories and `.rego` files.

    Every module is parsed (with regorus) so a syntax error surfaces here as a
    `PolicyLoadError` naming file, line and column, not later at evaluation time;
    `tests=False` skips parsing `*_test.rego` modules, which no decision reads (a server
    saves their parse: about a third of its memory on a 1,000-intent bundle). With
    `verification`, every path must be a bundle signed with that key (`.signatures.json`,
    checked as OPA does, see `_verify`) or a `BundleVerificationError` says why not.
    """
    policy = read_policy(paths, verification)
    # Imported here: _regorus imports this module.
    from aam_policy.engine._regorus import base_engine, build_engine, is_test_module

    base_engine(policy)  # parses the deciding modules and adds the data; cached for this thread
    if tests and any(is_test_module(module.path) for module in policy.modules):
        build_engine(policy, tests=True)  # tests too, for their syntax errors; not kept
    return policy


def read_policy(
    paths: Sequence[str | Path] | str | Path, verification: VerificationConfig | None = None
) -> PolicySet:
    """Like `load_policy` but without parsing the Rego (used by `check_paths`)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise PolicyLoadError("no policy paths given")
    modules: list[Module] = []
    seen: dict[str, Module] = {}
    duplicates: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    manifests: list[Manifest] = []
    for raw in paths:
        source = _read_source(Path(raw), verification)
        if source.manifest is not None:
            manifests.append(source.manifest)
        for module in source.modules:
            digest = module.sha256
            kept = seen.get(digest)
            if kept is not None:
                duplicates.append((module.path, kept.path))
                continue
            seen[digest] = module
            modules.append(module)
        for where, value, origin in source.data:
            _place(data, where, value, origin, origins)
    return PolicySet(
        modules=tuple(modules),
        data=data,
        manifests=tuple(manifests),
        sources=tuple(str(p) for p in paths),
        duplicates=tuple(duplicates),
    )


# --- one source: a directory, a tarball or a single file ----------------------------------


@dataclass
class _Source:
    modules: list[Module]
    data: list[tuple[tuple[str, ...], Any, str]]  # (path under data, value, origin file)
    manifest: Manifest | None


def _read_source(path: Path, verification: VerificationConfig | None = None) -> _Source:
    if not path.exists():
        raise PolicyLoadError("no such file or directory", str(path))
    if verification is not None:
        return _read_signed(path, verification)
    if path.is_dir():
        return _assemble(str(path), _walk_dir(path))
    if path.name.endswith(_TARBALL_SUFFIXES):
        return _assemble(str(path), _read_tarball(path))
    if path.suffix == ".rego":
        return _Source([_module(str(path), path.name, _read_file(path))], [], None)
    if path.suffix in (".json", ".yaml", ".yml"):
        # A data file named explicitly is data at the root, as with `opa eval -d file.json`.
        return _Source([], [((), _parse_data(str(path), _read_file(path)), str(path))], None)
    raise PolicyLoadError(
        "not a policy source (expected a directory, a .tar.gz bundle, .rego or data file)",
        str(path),
    )


def _read_signed(path: Path, verification: VerificationConfig) -> _Source:
    """A bundle whose every file (hidden ones too) is checked against its signature; the
    policy is then assembled from those very bytes, so nothing is read twice."""
    from aam_policy.engine._verify import verify_bundle_files  # it imports this module

    if path.is_dir():
        entries = list(_walk_dir(path, every_file=True))
    elif path.name.endswith(_TARBALL_SUFFIXES):
        entries = list(_read_tarball(path, every_file=True))
    else:
        raise PolicyLoadError(
            "signature verification needs a bundle directory or .tar.gz", str(path)
        )
    verify_bundle_files(str(path), entries, verification)
    return _assemble(str(path), entries)


def _read_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise PolicyLoadError(f"file is too large ({size} bytes > {MAX_FILE_BYTES})", str(path))
    return path.read_bytes()


def _walk_dir(root: Path, every_file: bool = False) -> Iterator[tuple[str, bytes]]:
    """Yield (relative posix name, bytes) of every candidate file, sorted, hidden ones skipped
    (`every_file`: all files, hidden ones too, as a signature must cover them)."""
    manifest = root / ".manifest"
    if manifest.is_file() and not every_file:
        yield ".manifest", _read_file(manifest)
    stack = [root]
    files: list[Path] = []
    while stack:
        current = stack.pop()
        for entry in sorted(current.iterdir()):
            if entry.name.startswith(".") and not every_file:
                continue
            if entry.is_dir():
                stack.append(entry)
            elif entry.is_file() and (
                every_file or entry.suffix == ".rego" or entry.name in _DATA_FILES
            ):
                files.append(entry)
    for file in sorted(files):
        yield file.relative_to(root).as_posix(), _read_file(file)


def _assemble(label: str, entries: Iterable[tuple[str, bytes]]) -> _Source:
    modules: list[Module] = []
    data: list[tuple[tuple[str, ...], Any, str]] = []
    manifest: Manifest | None = None
    for name, content in entries:
        shown = f"{label}/{name}"
        if name == ".manifest":
            manifest = _parse_manifest(shown, content)
            continue
        parts = PurePosixPath(name).parts
        if any(part.startswith(".") for part in parts):
            continue  # hidden entries (e.g. .signatures.json) are never policy
        if parts[-1] in _DATA_FILES:
            data.append((tuple(parts[:-1]), _parse_data(shown, content), shown))
        elif name.endswith(".rego"):
            modules.append(_module(shown, name, content))
    if manifest is not None:
        _check_roots(manifest, data)
        modules = [replace(m, roots=manifest.roots) for m in modules]
    return _Source(modules, data, manifest)


def _module(path: str, name: str, content: bytes) -> Module:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyLoadError(f"not valid UTF-8 (byte {exc.start})", path) from None
    return Module(path=path, name=name, text=text)


def _parse_data(path: str, content: bytes) -> Any:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyLoadError(f"not valid UTF-8 (byte {exc.start})", path) from None
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyLoadError(f"invalid JSON: {exc.msg}", path, exc.lineno, exc.colno) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise PolicyLoadError(f"invalid YAML: {exc}", path, line, column) from None


def _parse_manifest(path: str, content: bytes) -> Manifest:
    try:
        raw = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyLoadError(f"invalid manifest: {exc}", path) from None
    if not isinstance(raw, dict):
        raise PolicyLoadError("invalid manifest: not a JSON object", path)
    revision = raw.get("revision", "")
    roots = raw.get("roots", [""])
    rego_version = raw.get("rego_version", 1)
    metadata = raw.get("metadata") or {}
    if not isinstance(revision, str):
        raise PolicyLoadError("invalid manifest: revision must be a string", path)
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise PolicyLoadError("invalid manifest: roots must be a list of strings", path)
    if rego_version != 1:
        # regorus and this project are Rego v1 only; v0 bundles need OPA's v0 compatibility.
        raise PolicyLoadError(f"unsupported rego_version {rego_version!r} (only 1)", path)
    if not isinstance(metadata, dict):
        raise PolicyLoadError("invalid manifest: metadata must be an object", path)
    return Manifest(
        source=path,
        revision=revision,
        roots=tuple(r.strip("/") for r in roots),
        rego_version=1,
        metadata=metadata,
    )


def within_roots(parts: Sequence[str], roots: Sequence[str]) -> bool:
    """Is the document at `parts` (under data) inside one of the manifest `roots`?"""
    for root in roots:
        prefix = [p for p in root.split("/") if p]
        if list(parts[: len(prefix)]) == prefix:
            return True
    return False


def _check_roots(manifest: Manifest, data: list[tuple[tuple[str, ...], Any, str]]) -> None:
    """Data outside the manifest's roots is an error in OPA; report it the same way."""
    if "" in manifest.roots:
        return
    for where, value, origin in data:
        for leaf in _leaf_paths(where, value, manifest.roots):
            if not within_roots(leaf, manifest.roots):
                shown = "data." + ".".join(leaf) if leaf else "data"
                raise PolicyLoadError(
                    f"{shown} is outside the manifest roots {list(manifest.roots)}", origin
                )


def _leaf_paths(
    where: tuple[str, ...], value: Any, roots: Sequence[str]
) -> Iterator[tuple[str, ...]]:
    """Paths that must lie under a root: descend into objects while still above every root."""
    depth = max(len([p for p in r.split("/") if p]) for r in roots)
    if isinstance(value, dict) and len(where) < depth:
        for key, child in value.items():
            yield from _leaf_paths((*where, str(key)), child, roots)
    else:
        yield where


def _place(
    data: dict[str, Any],
    where: tuple[str, ...],
    value: Any,
    origin: str,
    origins: dict[tuple[str, ...], str],
) -> None:
    if not where and not isinstance(value, dict):
        raise PolicyLoadError("data at the bundle root must be a JSON object", origin)
    node: Any = data
    for i, key in enumerate(where[:-1] if where else ()):
        if key not in node:
            node[key] = {}
        child = node[key]
        if not isinstance(child, dict):
            _conflict(where[: i + 1], origin, origins)
        node = child
    if where:
        key = where[-1]
        if key in node:
            node[key] = _merge(node[key], value, where, origin, origins)
        else:
            node[key] = value
    else:
        _merge(data, value, (), origin, origins)
    origins.setdefault(where, origin)


def _merge(
    old: Any,
    new: Any,
    where: tuple[str, ...],
    origin: str,
    origins: dict[tuple[str, ...], str],
) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        for key, value in new.items():
            if key in old:
                old[key] = _merge(old[key], value, (*where, key), origin, origins)
            else:
                old[key] = value
        return old
    if old == new:
        return old  # the same document twice (e.g. two copies of one bundle) is harmless
    _conflict(where, origin, origins)


def _conflict(where: tuple[str, ...], origin: str, origins: dict[tuple[str, ...], str]) -> Any:
    other = next(
        (origins[where[:n]] for n in range(len(where), -1, -1) if where[:n] in origins), None
    )
    shown = "data." + ".".join(where) if where else "data"
    also = f" (also defined by {other})" if other and other != origin else ""
    raise PolicyLoadError(f"conflicting values for {shown}{also}", origin)


# --- tarballs --------------------------------------------------------------------------------


class _LimitedReader:
    """File-like wrapper failing once more than `limit` bytes were read (decompression bombs)."""

    def __init__(self, raw: IO[bytes], limit: int, label: str) -> None:
        self._raw = raw
        self._left = limit
        self._label = label

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size if size >= 0 else self._left + 1)
        self._left -= len(chunk)
        if self._left < 0:
            raise PolicyLoadError(
                f"tarball expands to more than {MAX_TARBALL_BYTES} bytes", self._label
            )
        return chunk


def _safe_member_name(name: str, label: str) -> str:
    """Normalize a member name; refuse names that climb out of the bundle.

    OPA's own `opa build` writes names like "/data.json": one leading "/" means the bundle root,
    as in OPA. Nothing is ever extracted to disk, but "..", "//host", drive letters, backslashes
    or NUL only appear in crafted archives.
    """
    stripped = name[1:] if name.startswith("/") else name
    parts = [p for p in stripped.split("/") if p not in ("", ".")]
    if (
        "\\" in name
        or "\x00" in name
        or stripped.startswith("/")
        or ".." in parts
        or (parts and re.fullmatch(r"[A-Za-z]:", parts[0]) is not None)
    ):
        raise PolicyLoadError(f"unsafe path in tarball: {name!r}", label)
    return "/".join(parts)


def _read_tarball(path: Path, every_file: bool = False) -> Iterator[tuple[str, bytes]]:
    label = str(path)
    entries: list[tuple[str, bytes]] = []
    names: set[str] = set()
    try:
        with gzip.open(path, "rb") as compressed:
            reader = _LimitedReader(compressed, MAX_TARBALL_BYTES, label)  # type: ignore[arg-type]
            # Stream mode ("r|"): members are read in order, nothing is seeked or extracted.
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for count, member in enumerate(tar, start=1):
                    if count > MAX_TARBALL_MEMBERS:
                        raise PolicyLoadError(
                            f"tarball has more than {MAX_TARBALL_MEMBERS} entries", label
                        )
                    name = _safe_member_name(member.name, label)
                    if member.isdir():
                        continue
                    if not name:
                        raise PolicyLoadError(f"unsafe path in tarball: {member.name!r}", label)
                    if member.issym() or member.islnk():
                        raise PolicyLoadError(
                            f"links are not allowed in a bundle: {member.name!r}", label
                        )
                    if not member.isfile():
                        raise PolicyLoadError(
                            f"special file not allowed in a bundle: {member.name!r}", label
                        )
                    if member.size > MAX_FILE_BYTES:
                        raise PolicyLoadError(
                            f"{member.name!r} is too large ({member.size} bytes)", label
                        )
                    if name in names:
                        raise PolicyLoadError(f"duplicate entry in tarball: {name!r}", label)
                    names.add(name)
                    base = name.rsplit("/", 1)[-1]
                    if (
                        every_file
                        or name == ".manifest"
                        or base.endswith(".rego")
                        or base in _DATA_FILES
                    ):
                        extracted = tar.extractfile(member)
                        entries.append((name, extracted.read() if extracted else b""))
    except PolicyLoadError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise PolicyLoadError(f"not a valid .tar.gz bundle: {exc}", label) from None
    entries.sort(key=lambda item: (item[0] != ".manifest", item[0]))
    return iter(entries)


# --- regorus error messages -------------------------------------------------------------------


def split_regorus_error(text: str) -> tuple[str | None, int | None, int | None, str]:
    """(path, line, column, message) from a regorus error ("--> file:l:c ... error: msg")."""
    text = text.split("Stack backtrace:")[0]
    location = _REGORUS_LOCATION.search(text)
    found = _REGORUS_ERROR.findall(text)
    message = found[-1].strip() if found else " ".join(text.split())
    if location is None:
        return None, None, None, message
    return location["path"], int(location["line"]), int(location["col"]), message
