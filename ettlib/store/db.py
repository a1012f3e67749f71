"""DuckDB connections and transactions: the one place ettlib opens and commits.

:func:`connect` opens every connection ettlib uses, with DuckDB's extension
auto-install and auto-load turned off, so that opening a file never reaches
the network (DuckDB would otherwise try to download, say, the SQLite
extension to read a SQLite file).  Before DuckDB sees a path,
:func:`check_database_path` refuses what is not a DuckDB file or a new one
(a folder, text, a SQLite file, an unreadable file, a read-only one when
writing), with one line naming the file and what to do; a file another
process holds is a :class:`~ettlib.errors.StoreLockedError` (``path``,
``holder``, ``pid``), built here and nowhere else.

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
import os
import re
import weakref
from collections.abc import Iterator
from pathlib import Path

import duckdb

from ettlib.errors import EttError, StoreLockedError, StoreOpenError
from ettlib.interrupts import held

__all__ = [
    "connect",
    "attach",
    "check_database_path",
    "describe_process",
    "transaction",
    "registered",
    "NO_NETWORK",
    "COMMITTED",
]

#: DuckDB settings of every connection: no extension is ever fetched or loaded by itself.
NO_NETWORK: dict[str, object] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

#: The text of the ``KeyboardInterrupt`` of a Ctrl-C that arrived while a transaction committed.
COMMITTED = "interrupted while the transaction committed: its writes were committed"

# Connections inside a transaction opened by transaction(), with the depth.
_open: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def connect(path: str | Path = ":memory:", *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to ``path`` with extension auto-install and auto-load off.

    A file path is checked first (:func:`check_database_path`): only a DuckDB
    file, or a new path, is ever handed to DuckDB, so a SQLite file is
    refused before DuckDB could reach for its SQLite extension.  A file held
    by another process is a :class:`~ettlib.errors.StoreLockedError`; any
    other refusal a :class:`~ettlib.errors.StoreOpenError` naming the file.

    >>> connect().execute("SELECT current_setting('autoload_known_extensions')").fetchone()
    (False,)
    """
    path = str(path)
    if path != ":memory:":
        check_database_path(path, read_only=read_only)
    try:
        return duckdb.connect(path, read_only=read_only, config=dict(NO_NETWORK))
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        raise _refused(path, read_only, exc) from None


#: The first bytes of a SQLite database file.
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: DuckDB's magic bytes, at offset 8 of every database file.
_DUCKDB_MAGIC, _DUCKDB_MAGIC_AT = b"DUCK", 8


def check_database_path(path, *, read_only: bool = False) -> None:
    """Refuse ``path`` unless it is a DuckDB file this process may open as asked, or a new file.

    Raises :class:`~ettlib.errors.StoreOpenError` (one line, naming the file and
    what to do) for a folder, something that is not a regular file, an
    unreadable file, a file that is not a DuckDB database (a SQLite file
    included), a missing file opened read-only, and -- when writing -- a file
    or folder this user may not write (DuckDB keeps ``<file>.wal`` beside
    the file).  Nothing is created or changed.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> check_database_path(folder / "new.duckdb")              # a new file: fine
    >>> _ = (folder / "notes.txt").write_text("open,high\\n")
    >>> check_database_path(folder / "notes.txt")
    Traceback (most recent call last):
    ...
    ettlib.errors.StoreOpenError: .../notes.txt is not a DuckDB database file (it starts with b'open,hig'); give the path of a DuckDB file, or a new path to create one
    """
    p = Path(path)
    if p.is_dir():
        raise StoreOpenError(f"{p} is a folder, not a DuckDB database file; give the path of a file "
                         f"in it (e.g. {p / 'ett.duckdb'})")
    if not p.exists():
        if read_only:
            raise StoreOpenError(f"cannot open {p} read-only: the file does not exist")
        folder = _existing_parent(p)
        if not folder.is_dir():
            raise StoreOpenError(f"cannot create {p}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreOpenError(f"cannot create {p}: the folder {folder} is not writable for this user; "
                             "give a path in a folder you can write to")
        return
    if not p.is_file():
        raise StoreOpenError(f"{p} is not a regular file; give the path of a DuckDB database file")
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise StoreOpenError(f"cannot read {p}: {exc.strerror or exc}; give a file you can read, or "
                         "change its permissions") from None
    if head.startswith(_SQLITE_MAGIC):
        raise StoreOpenError(f"{p} is a SQLite database, not a DuckDB one; ettlib opens only DuckDB "
                         "files: export its candles as CSV or Parquet and ingest them, or give "
                         "another path")
    if head[_DUCKDB_MAGIC_AT:_DUCKDB_MAGIC_AT + 4] != _DUCKDB_MAGIC:
        what = "an empty file" if not head else f"it starts with {head[:8]!r}"
        raise StoreOpenError(f"{p} is not a DuckDB database file ({what}); give the path of a DuckDB "
                         "file, or a new path to create one")
    if read_only:
        return
    if not os.access(p, os.W_OK):
        raise StoreOpenError(f"cannot open {p} for writing: the file is read-only for this user; change "
                         "its permissions, or copy it somewhere writable (reading needs no write access)")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise StoreOpenError(f"cannot open {p} for writing: its folder {p.parent} is not writable for this "
                         f"user, and DuckDB writes {p.name}.wal beside the file; move the file to a "
                         "writable folder")


def _existing_parent(p: Path) -> Path:
    """The nearest ancestor of ``p`` that exists (what the first ``mkdir`` would write into)."""
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def attach(con: duckdb.DuckDBPyConnection, path: str | Path, alias: str) -> None:
    """ATTACH the DuckDB file ``path`` read-only to ``con`` as ``alias``.

    The file is checked first (:func:`check_database_path`), as by
    :func:`connect`; a file another process writes is a
    :class:`~ettlib.errors.StoreLockedError` naming that process.  ``alias``
    must be ettlib's own identifier, never a user's text.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.duckdb"
    >>> connect(path).execute("CREATE TABLE t AS SELECT 42 AS x").close()
    >>> con = connect()
    >>> attach(con, path, "a")
    >>> con.execute("SELECT x FROM a.t").fetchone()
    (42,)
    """
    check_database_path(path, read_only=True)
    try:
        con.execute(f"ATTACH ? AS {alias} (READ_ONLY)", [str(path)])
    except (duckdb.IOException, duckdb.BinderException, duckdb.ConnectionException) as exc:
        raise _refused(str(path), True, exc) from None


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<holder>.*?) \(PID (?P<pid>\d+)\)")


def process_arguments(pid: int) -> list[str]:
    """The command line of process ``pid`` (empty when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).cmdline()
    except Exception:  # no psutil, no such process, no permission: nothing to tell
        return []


def describe_process(pid: int | None, program: str | None = None) -> str:
    """Who process ``pid`` is, in words: a Jupyter kernel, an ``ett`` command, or its program.

    >>> describe_process(None)
    'another process'
    """
    if pid is None:
        return "another process"
    args = process_arguments(pid)
    text = " ".join(args)
    if "ipykernel" in text or ("jupyter" in text and "kernel" in text):
        connection = next((a for a in args if a.endswith(".json")), None)
        detail = f", connection file {Path(connection).name}" if connection else ""
        return f"a Jupyter kernel (PID {pid}{detail})"
    ett = next((i for i, a in enumerate(args) if Path(a).name == "ett"), None)
    if ett is not None:
        return f"`ett {' '.join(args[ett + 1:ett + 4])}` (PID {pid})"
    return f"{program or (args[0] if args else 'a process')} (PID {pid})"


def _refused(path: str, read_only: bool, exc: duckdb.Error) -> EttError:
    """The error for a file DuckDB refused to open: locked (by whom), or another reason."""
    mode = "read-only" if read_only else "for writing"
    message = str(exc).replace("\n", " ").strip()
    if isinstance(exc, duckdb.ConnectionException):
        return StoreLockedError(
            f"cannot open {path} {mode}: this process already has it open with another setting "
            f"({message}); close that connection first", path=path, holder="this process")
    if "lock" in message.lower():
        match = _LOCK_HOLDER.search(message)
        holder = match["holder"] if match else None
        pid = int(match["pid"]) if match else None
        who = describe_process(pid, holder)
        if read_only:
            advice = ("it is being written (candles ingested, resampled, indicators or pivots stored, "
                      "a migration, or a run writing its results); wait for that to finish")
        else:
            then = ("shut that kernel down or close its Workbench" if who.startswith("a Jupyter kernel")
                    else "wait for it to finish" if who.startswith("`ett")
                    else "close it")
            advice = ("writing candles (ingest, resample, indicators, pivots, a schema migration) needs "
                      "the file to itself, while sessions, runs, reports and `ett data info` only read it "
                      f"and may share it; {then}, then run this again")
        return StoreLockedError(
            f"cannot open {path} {mode}: it is held by another process, {who}: {advice}",
            path=path, holder=holder, pid=pid)
    return StoreOpenError(f"cannot open {path} {mode}: {message}")


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
