"""The one exception the compiler raises."""

from __future__ import annotations


class CompileError(Exception):
    """An intent cannot be compiled into a bundle (or the bundle cannot be written).

    The message names the intent and the field in YAML terms (`spec.tools[1].escalate[0]...`).
    When `compile_bundle` raises it, nothing was written: a previous bundle stays intact.
    """
