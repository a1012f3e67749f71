"""Batched persistence of frames, delivered pairs and coordinator checkpoints.

The :class:`~ettlib.coordinator.InferenceTrainingCoordinator` buffers what it
must persist and hands it here every ``persist_every`` events; everything of
one flush commits in **one DuckDB transaction** (Arrow tables registered and
inserted with one statement each, never one INSERT per row):

- the frames retained now -> ``inference_frames`` with ``status =
  'pending'``, replacing the run's pending rows of the previous flush (a
  few: what matching retains): what a resume reloads;
- frames that left memory since the last flush, when the coordinator
  records them (``record_expired``) -> ``inference_frames`` with ``status =
  'expired'`` and ``expired_at``, appended once per frame (in the same
  INSERT as the pending ones: a statement's fixed cost is that of thousands
  of rows);
- delivered pairs -> ``training_events``, appended as one columnar batch
  (one row per (frame, event, subscriber); ``inference_id = ''`` where an
  event was delivered without a frame; ``event_key`` made in Arrow from
  the event's stream and time, not per pair in Python).  The table has no key: a pair is
  unique by the protocol (see the coordinator), which
  :func:`check_pairs_before` verifies when a run resumes;
- subscriber failures -> ``dead_letters``;
- the checkpoint -> ``coordinator_checkpoints`` (``resume_time``: every event
  with an earlier knowable time has been fully processed; ``next_seq``,
  ``next_inference_id``: the counters to continue from);
- whatever the subscribers persist in their ``checkpoint(con)`` hook;
- then each subscriber's ``checkpoint_state()`` bytes -> ``subscriber_states``
  (one row per ``(run_id, subscriber)``, replaced at every flush, deleted
  when the subscriber returns ``None``), read back by
  :func:`load_subscriber_states` when a run is resumed.  They are taken
  *after* the hooks, so a hook may still change what the state holds.

Examples
--------
>>> import duckdb
>>> from ettlib.store.schema import ensure_schema
>>> from ettlib.coordinator.frames import InferenceFrameReference
>>> con = duckdb.connect()
>>> _ = ensure_schema(con)
>>> ref = InferenceFrameReference(1, "X", "1m", 180_000, 180_000, 0, 120_000,
...                               (1.0, 1.0, 1.0, 1.0), "BUY", (1.5,), 0.5)
>>> pair = (1, "X", "1m", 180_000, 240_000, "learner", 0, 0.5, None)
>>> commit_flush(con, "r", pending=[ref], pairs=[pair], checkpoint=Checkpoint(240_000, 1, 2))
>>> load_checkpoint(con, "r")
Checkpoint(resume_time=240000, next_seq=1, next_inference_id=2)
>>> load_pending_frames(con, "r") == [ref]
True
>>> con.execute("SELECT inference_id, event_key, loss FROM training_events").fetchall()
[('1', 'candle:X:1m:180000', 0.5)]
>>> commit_flush(con, "r", checkpoint=Checkpoint(300_000, 1, 2), states=[("learner", lambda: b"w=3")])
>>> load_subscriber_states(con, "r"), load_pending_frames(con, "r")
({'learner': b'w=3'}, [])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ettlib.store.db import registered, transaction
from ettlib.errors import ConfigTypeError, StoreError
from ettlib.gc_pause import gc_paused
from ettlib.coordinator.frames import FRAME_COLUMNS, InferenceFrameReference

__all__ = [
    "Checkpoint",
    "PAIR_FIELDS",
    "PAIR_COLUMNS",
    "PIVOT_DELIVERY_FIELDS",
    "DEAD_LETTER_COLUMNS",
    "commit_flush",
    "load_checkpoint",
    "load_pending_frames",
    "load_subscriber_states",
    "check_pairs_before",
    "frames_table",
    "insert_pairs",
    "pairs_table",
    "event_keys",
    "delete_run_state",
    "new_run_id",
]

#: Fields of one buffered candle pair: the frame's id (int, str, or None for
#: none), the candle's stream, open time and close time, the subscriber, the
#: delivery's seq and what the subscriber returned (loss, metrics JSON).
PAIR_FIELDS: tuple[str, ...] = ("inference_id", "symbol", "timeframe", "timestamp", "knowable_time",
                                "subscriber", "seq", "loss", "metrics")

#: Fields of one buffered pivot delivery: its frames' ids (a tuple; ``(None,)``
#: for none), the event itself, the subscriber, the seq, loss and metrics.
PIVOT_DELIVERY_FIELDS: tuple[str, ...] = ("inference_ids", "event", "subscriber", "seq", "loss", "metrics")

#: Columns of :func:`pairs_table` (``training_events`` less ``run_id``, plus the event's fields).
PAIR_COLUMNS: tuple[str, ...] = (
    "inference_id",
    "event_kind",
    "event_key",
    "symbol",
    "timeframe",
    "pivot_type",
    "timestamp",
    "subscriber",
    "knowable_time",
    "seq",
    "loss",
    "metrics",
)

#: Columns of one buffered dead letter (``dead_letters`` less run_id).
DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "subscriber",
    "inference_id",
    "event_kind",
    "event_key",
    "event",
    "error",
    "traceback",
    "knowable_time",
    "seq",
)

#: Getters of a pivot's symbol, timeframe, pivot type, bar time and knowable time
_PIVOT_FIELDS = tuple(map(attrgetter, ("symbol", "timeframe", "pivot_type", "timestamp", "confirmed_at")))



@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a coordinator run stands after its last committed flush."""

    resume_time: int
    next_seq: int
    next_inference_id: int


def _id_text(ids: Sequence) -> pa.Array:
    """Frame ids (int, str, or None for "no frame") as a string array ('' for None).

    All-int ids (the usual ``new_inference_id()`` counter) are converted in
    Arrow, not one ``str()`` per id.
    """
    try:
        array = pa.array(ids, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array(["" if i is None else str(i) for i in ids], pa.string())
    text = pc.cast(array, pa.string())
    return pc.fill_null(text, "") if array.null_count else text


_FRAME_FIELDS = attrgetter(
    "inference_id", "symbol", "timeframe", "prediction_timestamp", "target_timestamp",
    "data_range_start", "data_range_end", "norm_params", "predicted_action", "predicted_candle",
    "confidence",
)
_PARAM_FIELDS = attrgetter("price_offset", "price_scale", "volume_offset", "volume_scale")


def frames_table(frames: Sequence[InferenceFrameReference], expired_at: Sequence[int] | None = None) -> pa.Table:
    """The frames as an Arrow table, built column by column (no per-row tuples).

    ``expired_at``: one time per frame (``None``: not expired).  ``run_id``
    is added by the INSERT, ``status`` by :func:`_frame_rows`.
    """
    (ids, symbols, timeframes, times, targets, starts, ends, params, actions, candles,
     confidences) = zip(*map(_FRAME_FIELDS, frames))
    po, ps, vo, vs = zip(*map(_PARAM_FIELDS, params))
    i64, f64, text = pa.int64(), pa.float64(), pa.string()
    return pa.table({
        "inference_id": _id_text(ids),
        "symbol": pa.array(symbols, text),
        "timeframe": pa.array(timeframes, text),
        "prediction_timestamp": pa.array(times, i64),
        "target_timestamp": pa.array(targets, i64),
        "data_range_start": pa.array(starts, i64),
        "data_range_end": pa.array(ends, i64),
        "price_offset": pa.array(po, f64),
        "price_scale": pa.array(ps, f64),
        "volume_offset": pa.array(vo, f64),
        "volume_scale": pa.array(vs, f64),
        "predicted_action": pa.array(actions, text),
        "predicted_candle": pa.array(candles, pa.list_(f64)),
        "confidence": pa.array(confidences, f64),
        "expired_at": pa.nulls(len(ids), i64) if expired_at is None else pa.array(expired_at, i64),
    })


def _insert(con: duckdb.DuckDBPyConnection, table: str, run_id: str, data: pa.Table) -> None:
    """INSERT ``data``, plus ``run_id``, into ``table`` (one statement)."""
    cols = ", ".join(data.column_names)  # names from fixed tuples in this module
    with registered(con, f"_ett_flush_{table}", data) as name:
        con.execute(f"INSERT INTO {table} (run_id, {cols}) SELECT ?, {cols} FROM {name}", [run_id])


def _frame_rows(expired: Sequence[tuple[InferenceFrameReference, int]],
                pending: Sequence[InferenceFrameReference]) -> pa.Table:
    """The expired frames, then the pending ones, as one table of ``inference_frames`` rows (one INSERT).

    >>> from ettlib.coordinator.frames import InferenceFrameReference
    >>> ref = InferenceFrameReference(1, "X", "1m", 180_000, 180_000, 0, 120_000,
    ...                               (1.0, 1.0, 1.0, 1.0), "BUY", (1.5,), 0.5)
    >>> rows = _frame_rows([(ref, 600_000)], [ref])
    >>> rows.column("status").to_pylist(), rows.column("expired_at").to_pylist()
    (['expired', 'pending'], [600000, None])
    """
    frames = [f for f, _ in expired]
    frames.extend(pending)
    expired_at = [t for _, t in expired] + [None] * len(pending) if expired else None
    status = pa.DictionaryArray.from_arrays(
        pa.array(np.repeat(np.array([0, 1], np.int32), [len(expired), len(pending)])),
        pa.array(["expired", "pending"], pa.string()))
    return frames_table(frames, expired_at).append_column("status", status)


def _column(values: Sequence, kind: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array; all ``None`` (a subscriber returning nothing) without a scan per item."""
    if values.count(None) == len(values):
        return pa.nulls(len(values), kind)
    return pa.array(values, kind)


def _text(values: Sequence[str]) -> pa.Array:
    """Strings as an Arrow array: one value repeated (a stream, a subscriber) as a one-entry dictionary."""
    n = len(values)
    if n and values.count(values[0]) == n:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([values[0]], pa.string()))
    return pa.array(values, pa.string())


_PAIRS_SCHEMA = pa.schema([(name, pa.int64() if name in ("timestamp", "knowable_time", "seq") else
                            pa.float64() if name == "loss" else pa.string()) for name in PAIR_COLUMNS])


def event_keys(kind: str, symbols: pa.Array, timeframes: pa.Array, pivot_types: pa.Array,
               times: pa.Array) -> pa.Array:
    """:func:`ettlib.replay.events.event_key` of each event of one ``kind``, made in Arrow.

    >>> event_keys("candle", pa.array(["X"]), pa.array(["1m"]), pa.nulls(1, pa.string()), pa.array([0])).tolist()
    ['candle:X:1m:0']
    """
    text = pa.string()
    parts = [kind, symbols.cast(text), timeframes.cast(text)]
    if kind == "pivot":
        parts.append(pivot_types.cast(text))
    return pc.binary_join_element_wise(*parts, times.cast(text), ":")


def _pairs_part(pairs: Sequence[tuple], kind: str) -> pa.Table:
    if kind == "pivot":  # one row per delivery, with the ids of its frames: one row per pair
        pairs = [(iid, e, s, q, lo, m) for ids, e, s, q, lo, m in pairs for iid in ids]
    if kind == "candle":
        ids, symbols, timeframes, times, knowable, subscribers, seqs, losses, metrics = zip(*pairs)
        pivot_types = None
    else:
        ids, events, subscribers, seqs, losses, metrics = zip(*pairs)
        symbols, timeframes, pivot_types, times, knowable = (list(map(f, events)) for f in _PIVOT_FIELDS)
    n, i64 = len(ids), pa.int64()
    symbols, timeframes, times = _text(symbols), _text(timeframes), pa.array(times, i64)
    pivot_types = pa.nulls(n, pa.string()) if pivot_types is None else _text(pivot_types)
    return pa.table({
        "inference_id": _id_text(ids),
        "event_kind": _text((kind,) * n),
        "event_key": event_keys(kind, symbols, timeframes, pivot_types, times),
        "symbol": symbols,
        "timeframe": timeframes,
        "pivot_type": pivot_types,
        "timestamp": times,
        "subscriber": _text(subscribers),
        "knowable_time": pa.array(knowable, i64),
        "seq": pa.array(seqs, i64),
        "loss": _column(losses, pa.float64()),
        "metrics": _column(metrics, pa.string()),
    })


def pairs_table(candle_pairs: Sequence[tuple] = (), pivot_pairs: Sequence[tuple] = ()) -> pa.Table:
    """Buffered candle pairs and pivot deliveries as one Arrow table of :data:`PAIR_COLUMNS`.

    ``candle_pairs`` are rows of :data:`PAIR_FIELDS`, ``pivot_pairs`` rows
    of :data:`PIVOT_DELIVERY_FIELDS`.

    Built column by column (a pivot's fields read with one C-level getter
    per event), the ids converted in Arrow, repeated text as dictionaries.
    """
    parts = [_pairs_part(p, k) for p, k in ((candle_pairs, "candle"), (pivot_pairs, "pivot")) if p]
    if not parts:
        raise ValueError("pairs_table needs at least one pair")
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables([part.cast(_PAIRS_SCHEMA) for part in parts])  # dictionaries as plain text


def insert_pairs(con: duckdb.DuckDBPyConnection, run_id: str, pairs: pa.Table) -> None:
    """Append :func:`pairs_table` rows to ``training_events`` (one INSERT, ``run_id`` a parameter)."""
    with registered(con, "_ett_flush_pairs", pairs) as name:
        con.execute(
            "INSERT INTO training_events (run_id, inference_id, event_kind, event_key, subscriber,"
            " knowable_time, seq, loss, metrics) SELECT ?, inference_id, event_kind, event_key,"
            f" subscriber, knowable_time, seq, loss, metrics FROM {name}",
            [run_id],
        )


def commit_flush(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    pending: Sequence[InferenceFrameReference] = (),
    stored_pending_from: int | None = 0,
    expired: Sequence[tuple[InferenceFrameReference, int]] = (),
    pairs: Sequence[tuple] = (),
    pivot_pairs: Sequence[tuple] = (),
    dead_letters: Sequence[tuple] = (),
    checkpoint: Checkpoint,
    hooks: Iterable[Callable[[duckdb.DuckDBPyConnection], object]] = (),
    states: Iterable[tuple[str, Callable[[], bytes | None]]] = (),
    stored_states: set[str] | None = None,
) -> None:
    """Write one flush in one transaction; on any error roll back and raise.

    ``pending`` are the frames retained now (they replace the run's pending
    rows: those with a prediction time from ``stored_pending_from`` on, all
    of them when it is 0, none when ``None``); ``expired`` holds ``(frame, expired_at)`` of frames to record as
    expired; ``pairs`` rows of :data:`PAIR_FIELDS` (candle pairs); ``pivot_pairs``
    rows of :data:`PIVOT_DELIVERY_FIELDS`; ``dead_letters`` rows of
    :data:`DEAD_LETTER_COLUMNS`; each of ``hooks`` is called with ``con``
    inside the transaction; then each ``(subscriber, get_state)`` of
    ``states`` is called and its bytes stored (see :func:`_write_states`).
    ``stored_states``, when given, is the set of the subscribers that have a
    stored state (the caller's own record, updated here once the transaction
    has committed): a ``None`` state deletes a row only where there is one.
    The garbage collector is paused meanwhile (:func:`ettlib.gc_pause.gc_paused`):
    the columns of thousands of frames and pairs would otherwise trigger
    collector passes over every object they are built from.
    """
    with gc_paused(), transaction(con):
        if stored_pending_from is not None:  # the last flush's pending rows (zone maps skip older rows)
            con.execute("DELETE FROM inference_frames WHERE run_id = ? AND status = 'pending'"
                        " AND prediction_timestamp >= ?", [run_id, stored_pending_from])
        if expired or pending:
            try:
                _insert(con, "inference_frames", run_id, _frame_rows(expired, pending))
            except duckdb.ConstraintException as exc:
                raise StoreError(
                    f"run {run_id!r}: an inference_id was registered twice ({exc}); "
                    "ids must be unique within a run (use coordinator.new_inference_id())"
                ) from exc
        if pairs or pivot_pairs:
            insert_pairs(con, run_id, pairs_table(pairs, pivot_pairs))
        if dead_letters:
            placeholders = ", ".join("?" * (len(DEAD_LETTER_COLUMNS) + 1))
            con.executemany(
                f"INSERT INTO dead_letters (run_id, {', '.join(DEAD_LETTER_COLUMNS)})"
                f" VALUES ({placeholders})",
                [(run_id, *row) for row in dead_letters],
            )
        values = [checkpoint.resume_time, checkpoint.next_seq, checkpoint.next_inference_id, run_id]
        updated = con.execute(  # an UPDATE costs half an INSERT OR REPLACE; a run's first flush inserts
            "UPDATE coordinator_checkpoints SET resume_time = ?, next_seq = ?, next_inference_id = ?"
            " WHERE run_id = ?", values).fetchone()[0]
        if not updated:
            con.execute("INSERT INTO coordinator_checkpoints (resume_time, next_seq, next_inference_id, run_id)"
                        " VALUES (?, ?, ?, ?)", values)
        for hook in hooks:
            hook(con)
        has_state = _write_states(con, run_id, checkpoint.resume_time, states, stored_states)
    if stored_states is not None:  # committed
        stored_states.difference_update(n for n, has in has_state.items() if not has)
        stored_states.update(n for n, has in has_state.items() if has)


def check_pairs_before(con: duckdb.DuckDBPyConnection, run_id: str, checkpoint: Checkpoint) -> None:
    """Refuse to resume ``run_id`` unless every stored pair precedes its checkpoint.

    What makes the appended pairs unique: each commit holds the pairs of
    events before its ``resume_time`` and with a ``seq`` below its
    ``next_seq``, and a resumed run delivers only events from
    ``resume_time`` on, numbered from ``next_seq``.  A stored pair at or
    after either would be delivered again: the store was changed outside
    the protocol.
    """
    row = con.execute(
        "SELECT count(*), min(knowable_time), min(seq) FROM training_events WHERE run_id = ?"
        " AND (knowable_time >= ? OR seq >= ?)",
        [run_id, checkpoint.resume_time, checkpoint.next_seq],
    ).fetchone()
    if row[0]:
        raise StoreError(
            f"run {run_id!r}: {row[0]} stored pair(s) lie after its checkpoint (knowable time "
            f">= {checkpoint.resume_time} or seq >= {checkpoint.next_seq}; first at {row[1]}, "
            f"seq {row[2]}): the store was written outside the coordinator; resume is refused "
            "(start the run over with replace=True, or use a new run_id)")


def _write_states(con: duckdb.DuckDBPyConnection, run_id: str, resume_time: int,
                  states: Iterable[tuple[str, Callable[[], bytes | None]]],
                  stored: set[str] | None = None) -> dict[str, bool]:
    """Store each subscriber's ``get_state()`` bytes in ``subscriber_states`` (``None``: delete).

    Returns ``{subscriber: whether it has a stored state now}``; with
    ``stored`` (the names that have one), a ``None`` state of a name not in
    it deletes nothing.
    """
    has_state: dict[str, bool] = {}
    for name, get_state in states:
        state = get_state()
        if state is None:
            if stored is None or name in stored:
                con.execute("DELETE FROM subscriber_states WHERE run_id = ? AND subscriber = ?",
                            [run_id, name])
            has_state[name] = False
            continue
        if not isinstance(state, (bytes, bytearray, memoryview)):
            raise ConfigTypeError(
                f"subscriber {name!r}: checkpoint_state() must return bytes or None, "
                f"got {type(state).__name__}"
            )
        # the bytes through Arrow: bound as a parameter, DuckDB copies them twice as slowly
        row = pa.table({"state": pa.array([bytes(state)], pa.binary())})
        with registered(con, "_ett_flush_state", row) as view:
            con.execute(
                "INSERT OR REPLACE INTO subscriber_states (run_id, subscriber, state, resume_time)"
                f" SELECT ?, ?, state, ? FROM {view}",
                [run_id, name, resume_time],
            )
        has_state[name] = True
    return has_state


def load_subscriber_states(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, bytes]:
    """``{subscriber: state}`` of ``run_id`` as of its last committed flush."""
    rows = con.execute(
        "SELECT subscriber, state FROM subscriber_states WHERE run_id = ? ORDER BY subscriber",
        [run_id],
    ).fetchall()
    return {name: bytes(state) for name, state in rows}


def load_checkpoint(con: duckdb.DuckDBPyConnection, run_id: str) -> Checkpoint | None:
    """The last committed checkpoint of ``run_id``, or ``None``."""
    row = con.execute(
        "SELECT resume_time, next_seq, next_inference_id FROM coordinator_checkpoints"
        " WHERE run_id = ?",
        [run_id],
    ).fetchone()
    return None if row is None else Checkpoint(int(row[0]), int(row[1]), int(row[2]))


def load_pending_frames(con: duckdb.DuckDBPyConnection, run_id: str) -> list[InferenceFrameReference]:
    """Frames of ``run_id`` still pending, ordered by prediction time."""
    rows = con.execute(
        f"SELECT {', '.join(FRAME_COLUMNS)} FROM inference_frames"
        " WHERE run_id = ? AND status = 'pending' ORDER BY prediction_timestamp, inference_id",
        [run_id],
    ).fetchall()
    return [InferenceFrameReference.from_row(r) for r in rows]


def new_run_id(prefix: str = "run") -> str:
    """A new unique run id: ``prefix``, a dash and 12 hex digits.

    >>> len(new_run_id()), new_run_id("explore").startswith("explore-")
    (16, True)
    """
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:12]}"


#: Tables holding a run's coordinator state (keyed by ``run_id``).
_RUN_TABLES = ("coordinator_checkpoints", "inference_frames", "training_events", "dead_letters",
               "subscriber_states")


def run_has_state(con: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    """True when ``run_id`` has a checkpoint, frames, delivered pairs or states stored."""
    for table in _RUN_TABLES:
        if con.execute(f"SELECT 1 FROM {table} WHERE run_id = ? LIMIT 1", [run_id]).fetchone():
            return True
    return False


def delete_run_state(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Delete every frame, pair, dead letter, checkpoint and state of ``run_id`` (one transaction)."""
    with transaction(con):
        for table in _RUN_TABLES:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
