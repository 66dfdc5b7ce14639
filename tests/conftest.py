"""Suite-wide collection rules."""

from __future__ import annotations

from pathlib import Path

_CORE = Path(__file__).resolve().parents[1] / "rego" / "aam" / "core"
_CORE_PRESENT = any(_CORE.glob("*.rego"))


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    # The compiler tests evaluate compiled bundles, which need the core Rego library; until it is in
    # the tree they cannot run at all (see the open issue 2 note), so they are not collected.
    if not _CORE_PRESENT and collection_path.name.startswith("test_compiler_"):
        return True
    return None
