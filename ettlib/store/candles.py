"""Candles as columns: the array form windows and caches hand out.

Examples
--------
>>> import numpy as np
>>> c = CandleArrays(np.array([0, 60_000]), np.array([[1.0, 2.0], [3.0, 4.0]]), ("open", "close"))
>>> len(c), c.column("close").tolist()
(2, [2.0, 4.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ettlib.errors import UnknownNameError

__all__ = ["CandleArrays"]


@dataclass(frozen=True, slots=True)
class CandleArrays:
    """Rows of one symbol and timeframe, sorted by open time.

    Attributes
    ----------
    timestamps
        ``int64[n]`` open times, strictly increasing.
    values
        ``float64[n, len(columns)]``; NULL (indicator warm-up) is NaN.
    columns
        Names of the columns of ``values``.
    """

    timestamps: np.ndarray
    values: np.ndarray
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.timestamps)

    def column(self, name: str) -> np.ndarray:
        """One column as a 1-D array (a view)."""
        try:
            return self.values[:, self.columns.index(name)]
        except ValueError:
            raise UnknownNameError("column", name, self.columns) from None
