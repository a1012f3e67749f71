"""The README's Python tour runs as written, in order, on a fresh database."""

from __future__ import annotations

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run_in_order(tmp_path, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3, "the README lost its API tour"
    namespace: dict = {"__name__": "readme"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
        namespace["storage"].close()
    finally:
        os.chdir(cwd)
    assert (tmp_path / "data" / "ett.duckdb").exists()
    assert namespace["engine"].clock.now() > namespace["first"]
    assert namespace["adapter"].pairs > 100, "the tour's adapter learned from no pair"
    counters = namespace["coordinator"].counters()
    assert counters.registered > 0 and counters.delivered >= namespace["adapter"].pairs
    assert "mae_close" in str(namespace["result"].summary())
