"""One data directory, several processes at once: a notebook kernel, `ett run`, `ett report`, `ett data`.

Every process that only reads candles opens the store read-only; each run
writes its own results file beside it (``<store>.runs/<run id>.duckdb``);
the run catalog unions them.  Only writing candles needs the file to itself,
and it says who holds it -- a Jupyter kernel by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import START_MS, make_candles
from ettlib.store import DuckDBStorage
from ettlib.store.catalog import RunCatalog, read_runs, run_results_path, runs_folder
from ettlib.store.demo import write_demo_data
from test_store_concurrency import Holder

ROOT = Path(__file__).resolve().parents[1]
ETT = str(Path(sys.executable).with_name("ett"))
MINI = ROOT / "tests" / "notebooks" / "experiment_mini.ipynb"
END = "2024-01-01T02:00:00"


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "data" / "ett.duckdb"
    path.parent.mkdir()
    with DuckDBStorage(path) as storage:
        write_demo_data(storage, days=0.25)
    return path


def _ett(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([ETT, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def kernel(tmp_path):
    """A real IPython kernel started through jupyter_client, with a helper to run code in it.

    Started again when it dies before answering (a port taken between
    jupyter_client's choice and the kernel's bind), as reports' kernels are.
    """
    from jupyter_client.manager import start_new_kernel

    from ettlib.reports.running import KERNEL_START_ATTEMPTS, _died_starting

    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path),
                                               env={**os.environ, "PYTHONPATH": str(ROOT)})
            break
        except RuntimeError as err:
            if not _died_starting(err) or attempt == KERNEL_START_ATTEMPTS:
                raise

    def run(code: str) -> str:
        out: list[str] = []
        reply = client.execute_interactive(code, timeout=120, output_hook=lambda m: _collect(m, out))
        if reply["content"]["status"] != "ok":
            raise AssertionError(f"kernel cell failed: {reply['content'].get('evalue')}\n{''.join(out)}")
        return "".join(out)

    run.pid = manager.provisioner.process.pid
    try:
        yield run
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _collect(message, out: list[str]) -> None:
    content = message["content"]
    if message["msg_type"] == "stream":
        out.append(content["text"])
    elif message["msg_type"] in ("execute_result", "display_data"):
        out.append(content["data"].get("text/plain", "") + "\n")
    elif message["msg_type"] == "error":
        out.append("\n".join(content["traceback"]))


@pytest.mark.slow
def test_a_kernel_exploring_while_a_run_a_report_and_data_info_complete(store, tmp_path, kernel):
    kernel(f"from ettlib import Workbench\n"
           f"wb = Workbench({str(store)!r})\n"
           f"s = wb.session(['ETH/USDT'], end={END!r}, timeframes=['5m'], pivot_levels=2)\n"
           "_ = s.step(50)\n"
           "print('holding', wb.store.read_only, s.clock.now())")

    run = _ett("run", "--db", store, "--adapter", "persistence", "--run-id", "beside-the-kernel",
               "--end", END, "-p", "baselines=[]", "-p", "context_length=16", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"results in {run_results_path(runs_folder(store), 'beside-the-kernel')}" in run.stderr
    report = _ett("report", MINI, "--db", store, "-p", "end", END, "--output-dir", tmp_path / "reports",
                  cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    info = _ett("data", "info", "--db", store, cwd=tmp_path)
    assert info.returncode == 0 and "ETH/USDT" in info.stdout, info.stderr

    # Writing candles needs the file to itself: refused, naming the kernel, and nothing changes.
    before = DuckDBStorage(store, read_only=True)
    count = before.count()
    before.close()
    csv = tmp_path / "more.csv"
    make_candles(10, start=START_MS + 60_000 * 10**5).to_csv(csv, index=False)
    ingest = _ett("data", "ingest", "--db", store, csv, "--symbol", "BTC/USDT", "--timeframe", "1m", cwd=tmp_path)
    assert ingest.returncode != 0
    assert f"a Jupyter kernel (PID {kernel.pid}" in ingest.stderr, ingest.stderr
    assert "needs the file to itself" in ingest.stderr and "Traceback" not in ingest.stderr

    # The kernel goes on exploring, and sees both runs through the catalog.
    seen = kernel("_ = s.step(50)\n"
                  "from ettlib.store.catalog import read_runs\n"
                  f"print(sorted(read_runs({str(store)!r}).run_id))")
    runs = read_runs(store)
    assert set(runs.run_id) == {"beside-the-kernel", *[r for r in runs.run_id if r.startswith("mini")]}
    assert len(runs) == 2 and set(runs.status) == {"completed"}
    assert str(sorted(runs.run_id)) in seen
    with DuckDBStorage(store, read_only=True) as after:
        assert after.count() == count and "BTC/USDT" not in after.symbols()

    kernel("s.close(); wb.close()")
    again = _ett("data", "ingest", "--db", store, csv, "--symbol", "BTC/USDT", "--timeframe", "1m", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_the_catalog_lists_a_run_in_progress_as_skipped_and_reads_the_rest(store, tmp_path):
    folder = runs_folder(store)
    folder.mkdir()
    for run_id in ("done", "busy"):
        con = duckdb.connect(str(run_results_path(folder, run_id)))
        from ettlib.store.schema import ensure_schema

        ensure_schema(con)
        con.execute("INSERT INTO runs (run_id, status, config) VALUES (?, 'completed', '{}')", [run_id])
        con.close()
    (folder / "notes.duckdb").write_text("not a database")
    holder = Holder(run_results_path(folder, "busy"), "rw")  # a run writing its file
    try:
        with RunCatalog(store) as catalog:
            assert catalog.con.execute("SELECT list(run_id) FROM runs").fetchone()[0] == ["done"]
            reasons = {s.path.name: (s.reason, s.pid) for s in catalog.skipped}
            assert reasons["busy.duckdb"] == ("in progress (held by a running process)", holder.pid)
            assert "not a DuckDB database file" in reasons["notes.duckdb"][0]
            assert catalog.find("done") == run_results_path(folder, "done")
            # the store's own tables are there too, read-only
            assert catalog.con.execute("SELECT count(*) FROM ohlcv_data").fetchone()[0] > 0
    finally:
        holder.release()
    assert sorted(read_runs(store).run_id) == ["busy", "done"]
