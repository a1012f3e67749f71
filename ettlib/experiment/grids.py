"""Parameter sets for sweeps: grids, and the YAML/JSON files that hold them.

Examples
--------
>>> expand_grid({"lr": [0.1, 0.01], "epochs": [1, 2]})
[{'lr': 0.1, 'epochs': 1}, {'lr': 0.1, 'epochs': 2}, {'lr': 0.01, 'epochs': 1}, {'lr': 0.01, 'epochs': 2}]
>>> expand_grid({"lr": [0.1, 0.01], "seed": 7})   # a scalar is a fixed value
[{'lr': 0.1, 'seed': 7}, {'lr': 0.01, 'seed': 7}]
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ettlib.errors import ConfigError, ConfigTypeError
from ettlib.reports import load_parameter_file

__all__ = ["expand_grid", "load_parameter_sets"]


def expand_grid(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of a grid's values, the last name varying fastest.

    A list or tuple value is the values to sweep; any other value is fixed
    (wrap a list in a list to fix it: ``{"columns": [["open", "close"]]}``).
    An empty grid gives one empty parameter set.
    """
    if not isinstance(grid, Mapping):
        raise ConfigTypeError(f"a grid is a mapping of parameter name to values, got {type(grid).__name__}")
    names, choices = [], []
    for name, values in grid.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"grid parameter name {name!r} is not a Python identifier")
        if isinstance(values, (list, tuple)):
            if not values:
                raise ConfigError(f"grid parameter {name!r} has no values")
            choices.append(list(values))
        else:
            choices.append([values])
        names.append(name)
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)]


def load_parameter_sets(path: str | Path) -> list[dict[str, Any]]:
    """Parameter sets from a YAML/JSON sweep file.

    The file holds one of:

    * a list of mappings: one parameter set each;
    * a mapping with ``grid`` (expanded by :func:`expand_grid`) and/or
      ``runs`` (a list of mappings), and optionally ``base`` (values every
      set starts from);
    * any other mapping: a grid.
    """
    data = load_parameter_file(path)
    if isinstance(data, list):
        sets, base = data, {}
    elif isinstance(data, dict) and data and set(data) <= {"base", "grid", "runs"}:
        base = data.get("base") or {}
        if not isinstance(base, dict):
            raise ConfigError(f"{path}: 'base' must be a mapping")
        if "grid" not in data and "runs" not in data:
            raise ConfigError(f"{path}: give 'grid' and/or 'runs' beside 'base'")
        sets = (expand_grid(data["grid"]) if "grid" in data else []) + list(data.get("runs") or [])
    elif isinstance(data, dict):
        sets, base = expand_grid(data), {}
    else:
        raise ConfigError(f"{path}: a sweep file holds a list of parameter sets or a grid mapping")
    out = []
    for i, params in enumerate(sets):
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: parameter set {i} is not a mapping: {params!r}")
        out.append({**base, **params})
    if not out:
        raise ConfigError(f"{path}: no parameter sets")
    return out
