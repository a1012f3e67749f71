"""The README's Python tour runs as written, in order, twice in a row in the same folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _run_tour(folder: Path) -> dict:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3, "the README lost its API tour"
    namespace: dict = {"__name__": "readme"}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def test_readme_tour_runs_twice_in_the_same_folder(tmp_path, capsys):
    first = _run_tour(tmp_path)
    assert (tmp_path / "data" / "ett.duckdb").exists()
    second = _run_tour(tmp_path)  # the same cells again: nothing collides (run ids, demo data)
    printed = capsys.readouterr().out
    for ns in (first, second):
        session = ns["s"]
        assert session.clock.now() > session.start
        assert ns["adapter"].pairs > 100, "the tour's adapter learned from no pair"
        counters = session.coordinator.counters()
        assert counters.registered > 0 and counters.delivered >= ns["adapter"].pairs
        assert "mae_close" in ns["result"].summary()
        assert ns["mine"].config.adapter == "object:ettlib.training.adapters.river.RiverAdapter"
    runs = {first["result"].run_id, first["mine"].run_id, second["result"].run_id, second["mine"].run_id}
    assert len(runs) == 4 and all(f"run {run_id}" in printed for run_id in runs)
    assert first["result"].metrics["model.mae_close"] == second["result"].metrics["model.mae_close"]
