"""Opening a store: only a DuckDB file (or a new path) reaches DuckDB; everything else is one clear line.

Each bad path -- text, random bytes, a SQLite database, an empty file, a folder --
is refused by the library (:class:`~ettlib.errors.StoreOpenError`) and by
``ett`` (one ``ett: error:`` line naming the file, exit status 2), and the file
is left exactly as it was.

Permissions: the suite runs as root, for whom a read-only or unreadable file
is writable and readable.  The permission cases therefore run ``ett`` as an
unprivileged user for real: a child process imports ettlib and warms it up,
forks, and the fork drops to uid/gid 65534 (``nobody``) with ``os.setuid``
before calling ``ett``'s ``main`` -- the real checks, against the kernel's
permissions (``os.access`` with the real uid).  Run by a non-root user, the
same test calls ``main`` directly.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import duckdb
import pytest

import ettlib
from conftest import make_candles
from ettlib.cli import main
from ettlib.errors import StoreLockedError, StoreOpenError
from ettlib.store import DuckDBStorage
from ettlib.store.db import connect


def _text(path: Path) -> Path:
    path.write_text("timestamp,open,high,low,close,volume\n0,1,1,1,1,1\n")
    return path


def _random(path: Path) -> Path:
    path.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(10_000)))
    return path


def _sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE ohlcv_data (symbol TEXT, timestamp INTEGER)")
    con.execute("INSERT INTO ohlcv_data VALUES ('ETH/USDT', 0)")
    con.commit()
    con.close()
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    (path / "inside.txt").write_text("x")
    return path


BAD = {
    # id: (make it, what the message says)
    "text": (_text, "is not a DuckDB database file (it starts with b'timestam')"),
    "random bytes": (_random, "is not a DuckDB database file"),
    "sqlite": (_sqlite, "is a SQLite database, not a DuckDB one"),
    "empty file": (_empty, "is not a DuckDB database file (an empty file)"),
    "folder": (_folder, "is a folder, not a DuckDB database file"),
}


def _fingerprint(path: Path):
    """Everything about ``path`` that opening it must not change."""
    if path.is_dir():
        return sorted((p.name, p.read_bytes()) for p in path.iterdir())
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode)


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("read_only", [False, True])
def test_a_path_that_is_not_a_duckdb_file_is_refused_and_left_alone(tmp_path, case, read_only):
    make, words = BAD[case]
    path = make(tmp_path / "store.db")
    before, files = _fingerprint(path), _siblings(path)
    with pytest.raises(StoreOpenError) as info:
        DuckDBStorage(path, read_only=read_only)
    assert str(info.value).startswith(str(path)) and words in str(info.value)
    assert _fingerprint(path) == before and _siblings(path) == files  # no .wal, no folder, no change


COMMANDS = {
    "data info": ["data", "info"],
    "data ingest": ["data", "ingest", "{csv}", "--symbol", "ETH/USDT", "--timeframe", "1m"],
    "data pivots": ["data", "pivots", "--symbol", "ETH/USDT"],
    "replay": ["replay", "ETH/USDT"],
    "run": ["run", "--adapter", "persistence", "--no-progress"],
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_ett_refuses_a_bad_db_in_one_line_with_status_2(tmp_path, capsys, case, command):
    make, words = BAD[case]
    path = make(tmp_path / "store.db")
    csv = tmp_path / "candles.csv"
    make_candles(5).to_csv(csv, index=False)
    before, files = _fingerprint(path), _siblings(path)
    argv = [a.format(csv=csv) for a in COMMANDS[command]] + ["--db", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err  # (`ett run` names its run only once its checks passed)
    assert err.startswith(f"ett: error: {path} ") and err.count("\n") == 1 and words in err, err
    assert "does not exist" not in err and "Traceback" not in err
    assert _fingerprint(path) == before and _siblings(path) == files


def test_a_sqlite_file_never_reaches_duckdb_so_no_extension_is_loaded(tmp_path, monkeypatch):
    path = _sqlite(tmp_path / "prices.sqlite")
    handed = []
    real = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda database=":memory:", *a, **k: (
        handed.append(str(database)), real(database, *a, **k))[1])
    for read_only in (False, True):
        with pytest.raises(StoreOpenError, match="SQLite"):
            DuckDBStorage(path, read_only=read_only)
    assert str(path) not in handed  # refused before DuckDB could look for its SQLite extension
    # and an ettlib connection asked to read one anyway fetches nothing: the extension is not there
    con = connect()
    loaded_before = con.execute("SELECT count(*) FROM duckdb_extensions() WHERE loaded").fetchone()[0]
    with pytest.raises(duckdb.Error) as info:
        con.execute("ATTACH ? AS lite (TYPE sqlite)", [str(path)])
    assert "sqlite" in str(info.value).lower()
    assert con.execute("SELECT count(*) FROM duckdb_extensions() WHERE loaded").fetchone()[0] == loaded_before
    assert con.execute("SELECT loaded OR installed FROM duckdb_extensions() WHERE extension_name = 'sqlite'"
                       ).fetchone() in (None, (False,))


def test_a_missing_store_read_only_and_a_file_as_folder(tmp_path):
    with pytest.raises(StoreOpenError, match="does not exist"):
        DuckDBStorage(tmp_path / "missing.duckdb", read_only=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreOpenError, match="is a file, not a folder"):
        DuckDBStorage(tmp_path / "file" / "ett.duckdb")
    assert (tmp_path / "file").read_text() == "x"


def test_store_locked_errors_carry_path_holder_and_pid_from_one_place(tmp_path):
    from ettlib.store.catalog import RunCatalog
    from test_store_concurrency import Holder

    path = tmp_path / "held.duckdb"
    DuckDBStorage(path).close()
    holder = Holder(path, "rw")
    try:
        for opener in (lambda: DuckDBStorage(path), lambda: DuckDBStorage(path, read_only=True),
                       lambda: RunCatalog(path)):
            with pytest.raises(StoreLockedError) as info:
                opener()
            err = info.value
            assert (err.path, err.pid) == (str(path), holder.pid) and err.holder
            assert f"PID {holder.pid}" in str(err) and "held by another process" in str(err)
    finally:
        holder.release()


# -- permissions, as an unprivileged user ---------------------------------------------

UNPRIVILEGED = textwrap.dedent(
    """
    import json, os, sys, tempfile
    from ettlib.cli import main

    warm = tempfile.mkdtemp()  # load every lazily imported module while still allowed to
    csv = os.path.join(warm, "c.csv")
    with open(csv, "w") as f:
        f.write("timestamp,open,high,low,close,volume\\n0,1,1,1,1,1\\n")
    main(["data", "ingest", csv, "--db", os.path.join(warm, "w.duckdb"), "--symbol", "A/B", "--timeframe", "1m"])
    main(["data", "info", "--db", os.path.join(warm, "w.duckdb")])
    out = []
    for argv in json.loads(sys.argv[1]):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the fork: drop to nobody, then run ett
            os.close(r)
            os.dup2(w, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            os.setgid(65534)
            os.setuid(65534)
            code = main(argv)
            sys.stderr.flush()
            os._exit(code)
        os.close(w)
        with os.fdopen(r) as f:
            err = f.read()
        out.append([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), err])
    print(json.dumps(out))
    """
)


def _run_unprivileged(argvs: list[list[str]]) -> list[tuple[int, str]]:
    if os.geteuid() != 0:  # permissions already bite: run ett here
        out = []
        for argv in argvs:
            import contextlib
            import io

            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                out.append((main(argv), err.getvalue()))
        return out
    root = str(Path(ettlib.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", UNPRIVILEGED, json.dumps(argvs)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [tuple(x) for x in json.loads(proc.stdout.splitlines()[-1])]


@pytest.fixture
def shared_dir():
    """A folder an unprivileged user may enter and read, but not write to."""
    path = Path(tempfile.mkdtemp(prefix="ett-perm-", dir="/tmp" if os.path.isdir("/tmp") else None))
    path.chmod(0o755)
    yield path
    for p in path.iterdir():
        p.chmod(0o644)
    import shutil

    shutil.rmtree(path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork and setuid")
def test_unreadable_and_read_only_files_are_refused_for_an_unprivileged_user(shared_dir):
    store = shared_dir / "ett.duckdb"
    with DuckDBStorage(store) as s:
        s.ingest(make_candles(30), "ETH/USDT", "1m")
    csv = shared_dir / "more.csv"
    make_candles(40).to_csv(csv, index=False)
    unreadable = shared_dir / "secret.duckdb"
    unreadable.write_bytes(store.read_bytes())
    writable = shared_dir / "open.duckdb"  # the file may be written, its folder not (DuckDB's .wal)
    writable.write_bytes(store.read_bytes())
    store.chmod(0o444)
    unreadable.chmod(0o000)
    writable.chmod(0o666)
    csv.chmod(0o644)
    before = {p.name: p.read_bytes() for p in (store, unreadable, writable)}
    ingest = ["data", "ingest", str(csv), "--symbol", "ETH/USDT", "--timeframe", "1m", "--db"]
    cases = [
        (ingest + [str(store)], 2, f"ett: error: cannot open {store} for writing: the file is read-only "
                                   "for this user"),
        (["data", "info", "--db", str(store)], 0, ""),  # reading needs no write access
        (["data", "info", "--db", str(unreadable)], 2, f"ett: error: cannot read {unreadable}: Permission denied"),
        (ingest + [str(unreadable)], 2, f"ett: error: cannot read {unreadable}: Permission denied"),
        (ingest + [str(writable)], 2, f"ett: error: cannot open {writable} for writing: its folder "
                                      f"{shared_dir} is not writable"),
        (ingest + [str(shared_dir / "new.duckdb")], 2,
         f"ett: error: cannot create {shared_dir / 'new.duckdb'}: the folder {shared_dir} is not writable"),
    ]
    results = _run_unprivileged([argv for argv, _, _ in cases])
    for (argv, code, start), (got, err) in zip(cases, results):
        assert got == code and err.startswith(start), (argv, got, err)
        assert err.count("\n") == (1 if code else 0) and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (store, unreadable, writable)} == before
    assert sorted(p.name for p in shared_dir.iterdir()) == ["ett.duckdb", "more.csv", "open.duckdb",
                                                           "secret.duckdb"]
