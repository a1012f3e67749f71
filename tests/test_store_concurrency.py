"""Two real processes on one DuckDB file: what is refused, what is shared.

DuckDB's rule (checked here, documented in ettlib.store): one process may
hold a file for writing, and then nobody else may open it, not even
read-only; several processes may hold it read-only together, and then
nobody may open it for writing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import make_candles
from ettlib.errors import StoreLockedError
from ettlib.store import DuckDBStorage

HOLDER = """
import sys
from ettlib.store import DuckDBStorage
store = DuckDBStorage(sys.argv[1], read_only=sys.argv[2] == "ro")
print("count", store.count(), flush=True)
sys.stdin.readline()          # hold the file until the parent says so
store.close()
print("closed", flush=True)
"""


class Holder:
    """A child process that opens the store and keeps it open."""

    def __init__(self, path, mode):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("count"):
            self.proc.kill()
            raise RuntimeError(f"holder failed: {line}{self.proc.stderr.read()}")
        self.count = int(line.split()[1])

    def release(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "closed"
        assert self.proc.wait(timeout=30) == 0

    @property
    def pid(self):
        return self.proc.pid


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "shared.duckdb"
    with DuckDBStorage(path) as store:
        store.ingest(make_candles(30), "ETH/USDT", "1m")
    return path


def test_a_writer_locks_out_other_writers_and_readers(path):
    writer = Holder(path, "rw")
    try:
        assert writer.count == 30
        for read_only in (False, True):
            with pytest.raises(StoreLockedError) as info:
                DuckDBStorage(path, read_only=read_only)
            err = info.value
            assert str(path) in str(err) and f"PID {writer.pid}" in str(err)
            assert err.path == str(path) and err.pid == writer.pid and err.holder
    finally:
        writer.release()
    with DuckDBStorage(path) as store:  # released: the parent can write now
        assert store.ingest(make_candles(31), "ETH/USDT", "1m").rows_added == 1


def test_readers_share_the_file_and_lock_out_writers(path):
    reader = Holder(path, "ro")
    try:
        with DuckDBStorage(path, read_only=True) as second_reader:
            assert second_reader.count() == reader.count == 30
            assert len(second_reader.read_window("ETH/USDT", "1m", 0, 2**62)) == 30
        with pytest.raises(StoreLockedError, match=f"PID {reader.pid}"):
            DuckDBStorage(path)
    finally:
        reader.release()


def test_same_process_with_another_mode_is_refused(path):
    with DuckDBStorage(path) as writer:
        with pytest.raises(StoreLockedError, match="this process"):
            DuckDBStorage(path, read_only=True)
        with DuckDBStorage(path) as same_mode:  # same mode shares the database
            assert same_mode.count() == writer.count() == 30
