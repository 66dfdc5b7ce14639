"""A `--log-ingest` target for the sidecar tests: records each POST /logs upload to a file."""

from __future__ import annotations

import json
import os
from typing import Any


def record(events: list[dict[str, Any]]) -> None:
    with open(os.environ["AAM_INGEST_PROBE_FILE"], "a", encoding="utf-8") as out:
        out.write(json.dumps(events) + "\n")


def fail(events: list[dict[str, Any]]) -> None:
    raise RuntimeError("audit store unavailable")
