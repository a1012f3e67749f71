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
  cancels the transaction: it is held (:func:`ettlib.interrupts.held`)
  until the block's statements have run, the transaction is rolled back
  instead of committed, and ``KeyboardInterrupt`` is raised -- so an
  interrupted write leaves nothing behind.  One that arrives during the
  ``COMMIT`` itself lets it finish and is then raised as
  ``KeyboardInterrupt("... committed ...")`` (:data:`COMMITTED`).  Without
  the hold, an interrupt landing inside a DuckDB statement surfaces as a
  DuckDB error ("Query interrupted") in the middle of the transaction, and
  the caller cannot tell it from a real failure.  Inside a replay's stop
  region (:func:`ettlib.interrupts.stop_requests`) the first Ctrl-C is only
  a request to stop at the next event and does not cancel a transaction.

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
import weakref
from collections.abc import Iterator

import duckdb

from ettlib.interrupts import held

__all__ = ["connect", "transaction", "registered", "NO_NETWORK", "COMMITTED"]

#: DuckDB settings of every connection: no extension is ever fetched or loaded by itself.
NO_NETWORK: dict[str, object] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

#: The text of the ``KeyboardInterrupt`` of a Ctrl-C that arrived while a transaction committed.
COMMITTED = "interrupted while the transaction committed: its writes were committed"

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
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` on any exception or Ctrl-C (see the module doc)."""
    depth = _open.get(con, 0)
    if depth:
        _open[con] = depth + 1
        try:
            yield con
        finally:
            _open[con] = depth
        return
    committing = False
    try:
        with held() as hold:
            con.execute("BEGIN TRANSACTION")
            _open[con] = 1
            try:
                yield con
            except BaseException:
                _open.pop(con, None)
                con.execute("ROLLBACK")
                raise
            _open.pop(con, None)
            if hold.interrupted:  # Ctrl-C inside the block: keep nothing; held() raises
                con.execute("ROLLBACK")
                return
            committing = True
            try:
                con.execute("COMMIT")
            except BaseException:
                committing = False
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
    except KeyboardInterrupt as exc:
        if committing and not exc.args:  # held during COMMIT: the data is in
            raise KeyboardInterrupt(COMMITTED) from None
        raise
