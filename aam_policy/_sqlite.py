"""One SQLite connection per thread for a database file: what every store here shares.

Opening a connection per operation costs several fsyncs (closing the last connection to a WAL
database checkpoints it), so each thread keeps one. A connection inherited through fork() is
never used (SQLite's locks belong to the parent), and `close()` retires every connection at
once: each thread reopens on its next use.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

Durability = Literal["full", "normal"]
DURABILITY_MODES: tuple[str, ...] = ("full", "normal")


def check_durability(durability: str) -> str:
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}")
    return durability


class _ThreadConn(threading.local):
    conn: sqlite3.Connection | None = None
    owner: tuple[int, int] = (0, 0)  # (pid, generation) the connection belongs to
    sync: str = ""  # the connection's current PRAGMA synchronous, when set per transaction


class ThreadConnections:
    """Connections to `path` in WAL mode, one per thread, in autocommit mode (each read is a
    fresh snapshot; writes go through `transaction`). `pragmas` run on every new connection;
    rows are `sqlite3.Row` unless `named_rows=False`. `page_size` applies to a file this creates
    (SQLite fixes the page size when it writes the first page)."""

    def __init__(
        self,
        path: Path,
        *,
        timeout: float = 30.0,
        pragmas: Sequence[str] = (),
        named_rows: bool = True,
        page_size: int | None = None,
    ) -> None:
        self.path = path
        self._timeout = timeout
        self._named_rows = named_rows
        self._pragmas = tuple(pragmas)
        self._page_size = page_size
        self._local = _ThreadConn()
        self._lock = threading.Lock()
        self._open: list[sqlite3.Connection] = []
        self._generation = 0

    def get(self, sync: str | None = None) -> sqlite3.Connection:
        """This thread's connection; with `sync`, its PRAGMA synchronous set to that first."""
        local = self._local
        owner = (os.getpid(), self._generation)
        if local.conn is None or local.owner != owner:
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            if self._named_rows:
                conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            if self._page_size is not None:  # before WAL mode writes the first page
                conn.execute(f"PRAGMA page_size = {int(self._page_size)}")
            # WAL: readers never block the writer; the mode is persistent in the file.
            conn.execute("PRAGMA journal_mode = WAL")
            for pragma in self._pragmas:
                conn.execute(f"PRAGMA {pragma}")
            with self._lock:
                self._open.append(conn)
            local.conn, local.owner, local.sync = conn, owner, ""
        if sync is not None and local.sync != sync:
            # Per connection, and only outside a transaction: set before BEGIN.
            local.conn.execute(f"PRAGMA synchronous = {sync}")
            local.sync = sync
        return local.conn

    @contextlib.contextmanager
    def transaction(self, sync: str | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from the start (no upgrade races)."""
        conn = self.get(sync)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (full disk): the kept connection must not stay
            # inside the transaction.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every connection opened so far (each thread reopens on next use)."""
        with self._lock:
            conns, self._open = self._open, []
            self._generation += 1
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
