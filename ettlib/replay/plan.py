"""Every event of a replay as merged columns, and the loop that delivers them.

:func:`build_plan` turns the cached base candles into all the events of a
replay at once -- higher timeframes aggregated (:mod:`ettlib.replay.aggregate`),
pivots detected (:func:`ettlib.replay.pivots.detect_pivots`), inference steps
scheduled -- as per-kind column tables plus one merged order (a stable sort of
a packed int64 key: knowable time, then the event's *rank*; ties keep bar
order).  :class:`~ettlib.replay.ReplayEngine` walks that order.

Event objects are built only when delivered, chunk by chunk: :func:`events`
for the generator, :func:`columns` for the fast path
(:mod:`ettlib.replay.dispatch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ettlib.replay.events import EVENT_CLASSES, pivot_type_name
from ettlib.replay.feed import FeedConfig
from ettlib.timeframes import TIMEFRAMES

__all__ = ["Plan", "build_plan", "events", "columns", "CANDLE", "PIVOT", "STEP"]

#: Event kinds, in their order at one instant (indices into ``EVENT_CLASSES``).
CANDLE, PIVOT, STEP = 0, 1, 2

# The rank of an event orders it within one instant and names its stream:
#   ((symbol * N_KINDS + kind) * TIMEFRAME_SLOTS + timeframe) * PIVOT_SLOTS + level * 2 + side
# with symbol and timeframe the indices into the replay's sorted symbols and
# timeframes, side 0 for lows and 1 for highs (candles and steps: 0, 0).
N_KINDS = 3
TIMEFRAME_SLOTS = 16  # more than the known timeframes
PIVOT_SLOTS = 16  # level * 2 + side for levels 0..7
STREAM_SLOTS = TIMEFRAME_SLOTS * PIVOT_SLOTS


def rank_of(symbol, kind, timeframe, level=0, side=0):
    """The rank of an event (ints or int64 arrays; see above)."""
    return ((symbol * N_KINDS + kind) * TIMEFRAME_SLOTS + timeframe) * PIVOT_SLOTS + level * 2 + side


def _kind_of(rank):
    return (rank // STREAM_SLOTS) % N_KINDS


def _timeframe_of(rank):
    return (rank // PIVOT_SLOTS) % TIMEFRAME_SLOTS


def _symbol_of(rank):
    return rank // (N_KINDS * STREAM_SLOTS)


# --------------------------------------------------------------------------
# The plan: every event of the replay as sorted columns
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """All events of a replay, merged: per-kind tables and the merged order.

    Each merged event has a *rank* (:func:`rank_of`): it orders events within
    one instant and names their stream.
    """

    symbols: np.ndarray  # object array of names, by symbol index
    timeframes: np.ndarray  # object array of names, by timeframe index
    candles: dict  # column -> array (timestamp, close_time, open..volume)
    pivots: dict  # (level, is_low, timestamp, price, strength, confirmed_at)
    steps: dict  # (timestamp,)
    time: np.ndarray  # merged: knowable time
    rank: np.ndarray  # merged: rank (see above)
    kind: np.ndarray  # merged: CANDLE / PIVOT / STEP
    row: np.ndarray  # merged: row in the kind's table
    channel: np.ndarray  # merged: index into channels
    channels: list  # (kind, symbol, timeframe, pivot_type | None)


def build_plan(parts: list[tuple[dict, dict]], symbols: tuple[str, ...], config: FeedConfig) -> Plan:
    """The events of one span of a replay, merged (see :class:`Plan`).

    ``parts[i]`` holds symbol ``symbols[i]``'s candles completed in the span
    (``{timeframe: AggregatedCandles}``, every timeframe of ``config``) and
    its pivots confirmed in it (``{timeframe: PivotTable}``, every pivot
    timeframe, ``confirmed_at`` the knowable time):
    :class:`~ettlib.replay.planner.SpanPlanner` makes them.
    """
    base_ms = TIMEFRAMES[config.base_timeframe]
    c_parts, p_parts, s_parts = [], [], []
    steps = set(config.step_streams)
    for si, (symbol, (candles, pivots)) in enumerate(zip(symbols, parts)):
        for ti, tf in enumerate(config.timeframes):
            agg = candles[tf]
            c_parts.append((si, ti, agg.timestamp, agg.close_time, agg.open, agg.high, agg.low,
                            agg.close, agg.volume))
            if (symbol, tf) in steps:
                s_parts.append((si, ti, agg.close_time[agg.on_time]))
            table = pivots.get(tf)
            if table is not None:
                p_parts.append((si, ti, table.level, table.is_low, table.timestamp, table.price,
                                table.strength, table.confirmed_at))

    def column(parts, k, dtype):
        if not parts:
            return np.empty(0, dtype)
        return np.concatenate([p[k] for p in parts]).astype(dtype, copy=False)

    candles = {name: column(c_parts, k, np.int64) for k, name in
               enumerate(["timestamp", "close_time"], 2)}
    for k, name in enumerate(["open", "high", "low", "close", "volume"], 4):
        candles[name] = column(c_parts, k, np.float64)
    pivots = {"level": column(p_parts, 2, np.int64), "is_low": column(p_parts, 3, bool),
              "timestamp": column(p_parts, 4, np.int64), "price": column(p_parts, 5, np.float64),
              "strength": column(p_parts, 6, np.float64),
              "confirmed_at": column(p_parts, 7, np.int64)}
    steps_t = {"timestamp": column(s_parts, 2, np.int64)}
    nc, npv = len(candles["timestamp"]), len(pivots["timestamp"])

    # One int64 key per event: (knowable time, rank).  Ties (same key) keep
    # the concatenation order, which is bar-time order within each stream, so
    # a stable sort gives docs/design.md's order (times are multiples of the base
    # timeframe, so they pack densely).
    time_all = np.concatenate([candles["close_time"], pivots["confirmed_at"], steps_t["timestamp"]])
    rank = np.concatenate(
        [np.full(len(p[2]), rank_of(p[0], CANDLE, p[1]), np.int64) for p in c_parts]
        + [rank_of(p[0], PIVOT, p[1], p[2], (~p[3]).astype(np.int64))
           for p in p_parts]
        + [np.full(len(p[2]), rank_of(p[0], STEP, p[1]), np.int64) for p in s_parts]
        + [np.empty(0, np.int64)])
    span = len(symbols) * N_KINDS * STREAM_SLOTS
    key = time_all - (int(time_all.min()) if len(time_all) else 0)
    key //= base_ms
    if len(key) and int(key.max()) >= (2**62) // span:
        order = np.lexsort((rank, time_all))  # too wide to pack: sort on two keys
    else:
        key *= span
        key += rank
        order = np.argsort(key, kind="stable")
    del key
    rank = rank[order]
    kind = _kind_of(rank).astype(np.int8)
    offsets = np.array([0, nc, nc + npv], dtype=np.int64)

    # Channels (who subscribes to what), and the dense index of each rank.
    channels, dense = [], np.full(span, -1, np.int64)
    for si, s in enumerate(symbols):
        for ti, tf in enumerate(config.timeframes):
            streams = [(CANDLE, 0, 0, None), (STEP, 0, 0, None)] + [
                (PIVOT, level, side, pivot_type_name(level, side == 0))
                for level in range(1, config.pivot_levels + 1) for side in (0, 1)]
            for k, level, side, ptype in streams:
                dense[rank_of(si, k, ti, level, side)] = len(channels)
                channels.append((k, s, tf, ptype))
    return Plan(
        symbols=np.array(symbols, dtype=object),
        timeframes=np.array(config.timeframes, dtype=object),
        candles=candles, pivots=pivots, steps=steps_t,
        time=time_all[order], rank=rank, kind=kind, row=order - offsets[kind],
        channel=dense[rank], channels=channels,
    )


def _type_names(levels: np.ndarray, is_low: np.ndarray, max_level: int) -> list:
    names = np.array([[pivot_type_name(k, False), pivot_type_name(k, True)]
                      for k in range(max_level + 1)], dtype=object)
    return names[levels, is_low.astype(np.int64)].tolist()


def _names(names: np.ndarray, index: np.ndarray) -> list:
    """``names[index]`` as a list (one repeated name when there is only one)."""
    if len(names) == 1:
        return [names[0]] * len(index)
    return names[index].tolist()


def columns(plan: Plan, kind: int, rows: np.ndarray, ranks: np.ndarray, max_level: int) -> list:
    """Field columns (Python lists, in the event class's field order) of ``rows``.

    ``ranks`` are the merged ranks of the same events (they name the stream).
    """
    sym = _names(plan.symbols, _symbol_of(ranks))
    tf = _names(plan.timeframes, _timeframe_of(ranks))
    if kind == CANDLE:
        t = plan.candles
        return [sym, tf, t["timestamp"][rows].tolist(), t["close_time"][rows].tolist(),
                t["open"][rows].tolist(), t["high"][rows].tolist(), t["low"][rows].tolist(),
                t["close"][rows].tolist(), t["volume"][rows].tolist()]
    if kind == PIVOT:
        t = plan.pivots
        return [sym, tf, _type_names(t["level"][rows], t["is_low"][rows], max_level),
                t["level"][rows].tolist(), t["timestamp"][rows].tolist(),
                t["price"][rows].tolist(), t["strength"][rows].tolist(),
                t["confirmed_at"][rows].tolist()]
    return [sym, tf, plan.steps["timestamp"][rows].tolist()]


def events(plan: Plan, positions: np.ndarray, max_level: int) -> list:
    """The event objects at merged ``positions`` (sorted), in that order."""
    kinds = plan.kind[positions]
    rows = plan.row[positions]
    ranks = plan.rank[positions]
    built = []
    slots = np.empty(len(positions), dtype=np.int64)
    for kind in (CANDLE, PIVOT, STEP):
        where = np.flatnonzero(kinds == kind)
        if len(where):
            objs = list(map(EVENT_CLASSES[kind], *columns(plan, kind, rows[where], ranks[where], max_level)))
            slots[where] = np.arange(len(built), len(built) + len(objs))
            built.extend(objs)
    return list(map(built.__getitem__, slots.tolist()))
