"""DuckDB connections and transactions: the one place ettlib opens and commits.

:func:`connect` opens every connection ettlib uses, with DuckDB's extension
auto-install and auto-load turned off, so that opening a file never reaches
the network (DuckDB would otherwise try to download, say, the SQLite
extension to read a SQLite file).

:func:`transaction` is the one ``BEGIN ... COMMIT / ROLLBACK`` block:

- it commits when the block ends normally and rolls back on any exception,
  ``KeyboardInterrupt`` included, so a failed write changes nothing;
- nested blocks on the same connection join the outer transaction (DuckDB
  refuses a nested ``BEGIN`` and aborts the open transaction when asked);
- in the main thread, a Ctrl-C (``SIGINT``) that arrives inside the block
  is held until the transaction has committed or rolled back, then raised
  as ``KeyboardInterrupt``.  Without that, an interrupt landing inside a
  DuckDB statement surfaces as a DuckDB error ("Query interrupted") in the
  middle of the transaction, and the caller cannot tell it from a real
  failure.

Examples
--------
>>> con = connect(":memory:")
>>> _ = con.execute("CREATE TABLE t (x INTEGER)")
>>> with transaction(con):
...     _ = con.execute("INSERT INTO t VALUES (1)")
...     with transaction(con):           # joins the outer one
...         _ = con.execute("INSERT INTO t VALUES (2)")
>>> try:
...     with transaction(con):
...         _ = con.execute("INSERT INTO t VALUES (3)")
...         raise ValueError("bad row")
... except ValueError:
...     pass
>>> con.execute("SELECT list(x ORDER BY x) FROM t").fetchone()[0]
[1, 2]
"""

from __future__ import annotations

import contextlib
import signal
import threading
import weakref
from collections.abc import Iterator

import duckdb

__all__ = ["connect", "transaction", "registered", "deferred_interrupts", "NO_NETWORK"]

#: DuckDB settings of every connection: no extension is ever fetched or loaded by itself.
NO_NETWORK: dict[str, object] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

# Connections inside a transaction opened by transaction(), with the depth.
_open: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def connect(path: str = ":memory:", *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to ``path`` with extension auto-install and auto-load off.

    >>> connect().execute("SELECT current_setting('autoload_known_extensions')").fetchone()
    (False,)
    """
    return duckdb.connect(str(path), read_only=read_only, config=dict(NO_NETWORK))


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, data) -> Iterator[str]:
    """``data`` (an Arrow table, DataFrame, ...) visible to SQL on ``con`` as ``name`` inside the block.

    ``name`` must be ettlib's own text, never a user's.  A result left
    unfinished on ``con`` (a ``fetchone()``) is completed first: DuckDB
    refuses to register while one is pending.

    >>> import pyarrow as pa
    >>> con = connect()
    >>> with registered(con, "_ett_rows", pa.table({"x": [1, 2]})) as view:
    ...     con.execute(f"SELECT sum(x) FROM {view}").fetchone()[0]
    3
    """
    con.complete()
    con.register(name, data)
    try:
        yield name
    finally:
        with contextlib.suppress(duckdb.Error):  # a transaction aborted by the block's error
            con.unregister(name)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold ``SIGINT`` (Ctrl-C) until the block ends, then raise ``KeyboardInterrupt``.

    Only in the main thread, and only while Python's default handler is
    installed (elsewhere the block runs as it is).  Nested blocks share the
    outer one's hold.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` on any exception (see the module doc)."""
    depth = _open.get(con, 0)
    if depth:
        _open[con] = depth + 1
        try:
            yield con
        finally:
            _open[con] = depth
        return
    with deferred_interrupts():
        con.execute("BEGIN TRANSACTION")
        _open[con] = 1
        try:
            yield con
        except BaseException:
            _open.pop(con, None)
            con.execute("ROLLBACK")
            raise
        _open.pop(con, None)
        try:
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
