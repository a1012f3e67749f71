"""Ctrl-C (SIGINT) that never lands inside a DuckDB statement.

Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main
thread happens to be.  Inside a DuckDB statement that surfaces as a DuckDB
error ("Query interrupted", "Current transaction is aborted", a registered
table whose schema cannot be read), in the middle of a transaction or of a
subscriber's window read, and the caller cannot tell it from a real
failure.  ettlib therefore takes SIGINT in one of two ways:

:func:`held` -- what :func:`ettlib.store.db.transaction` uses
    A SIGINT inside the block is recorded, not raised; the outermost block
    raises it as ``KeyboardInterrupt`` when it ends.  ``hold.interrupted``
    tells the outermost block whether one arrived (a transaction then rolls
    back instead of committing).
:func:`stop_requests` -- what a replay session and ``run_experiment`` use
    A SIGINT inside the block only *requests* a stop: nothing is raised, no
    DuckDB statement is disturbed, and the code inside honours the request
    where stopping is safe by calling :func:`check`, which raises
    ``KeyboardInterrupt`` there (the replay engine checks between events).
    ``on_request`` callbacks run when the request arrives (a session makes
    its deliver loop hand control back after the current callback).  A
    second SIGINT while a stop is pending is raised at once -- for code that
    never reaches a boundary -- except inside a :func:`held` block, which
    holds it as usual.

Both apply only in the main thread and while Python's default handler (or
ettlib's own) is installed; elsewhere -- a worker thread, an application's
own handler -- a block runs as it is.  Blocks nest: a :func:`held` block
inside a stop region holds only the second SIGINT, and an inner
:func:`stop_requests` joins the outer one's request.

Examples
--------
>>> import os, signal
>>> try:
...     with stop_requests() as stop:
...         os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C: only a request
...         print("still running; requested:", stop.requested)
...         check()                              # where it is safe to stop
...         print("not reached")
... except KeyboardInterrupt:
...     print("stopped at the check")
still running; requested: True
stopped at the check
>>> with stop_requests(raise_at_exit=False):     # the work inside decides
...     os.kill(os.getpid(), signal.SIGINT)
>>> signal.getsignal(signal.SIGINT) is signal.default_int_handler
True
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["held", "Hold", "stop_requests", "StopRequest", "check", "requested", "is_duckdb_interrupt"]


class StopRequest:
    """Whether a Ctrl-C asked the code of a :func:`stop_requests` block to stop."""

    def __init__(self):
        self.requested = False
        self.raised = False
        self.callbacks: list[Callable[[], object]] = []

    def request(self) -> None:
        """Ask for a stop (what the first SIGINT does); runs the ``on_request`` callbacks."""
        self.requested = True
        for callback in tuple(self.callbacks):
            callback()

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` when a stop was requested."""
        if self.requested:
            self.raised = True
            raise KeyboardInterrupt

    def __repr__(self) -> str:
        return f"StopRequest(requested={self.requested})"


class Hold:
    """What a :func:`held` block knows: whether a SIGINT arrived that it will raise."""

    def __init__(self, outermost: bool):
        self.outermost = outermost

    @property
    def interrupted(self) -> bool:
        """True in the outermost block once a SIGINT was held (it is raised when the block ends)."""
        return self.outermost and _state.caught > 0


class _State:
    """The main thread's interrupt state (only the main thread reads or writes it)."""

    def __init__(self):
        self.users = 0  # open blocks that installed or share _handler
        self.previous = None  # the handler _handler replaced
        self.depth = 0  # open held() blocks
        self.caught = 0  # SIGINTs held by them
        self.stop: StopRequest | None = None  # the open stop region's request


_state = _State()


def _handler(signum, frame) -> None:
    stop = _state.stop
    if stop is not None and not stop.requested:
        stop.request()
        return
    if _state.depth:
        _state.caught += 1
        return
    raise KeyboardInterrupt


def _engage() -> bool:
    """Install (or share) ettlib's handler; False where a block must run as it is."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGINT)
    if current is _handler:
        _state.users += 1
        return True
    if current is not signal.default_int_handler:
        return False
    _state.previous = current
    signal.signal(signal.SIGINT, _handler)
    _state.users = 1
    return True


def _release() -> None:
    _state.users -= 1
    if _state.users == 0:
        signal.signal(signal.SIGINT, _state.previous)
        _state.previous = None


@contextlib.contextmanager
def held() -> Iterator[Hold]:
    """Hold SIGINT until the block ends, then raise ``KeyboardInterrupt`` (see the module doc).

    >>> import os, signal
    >>> try:
    ...     with held() as hold:
    ...         os.kill(os.getpid(), signal.SIGINT)
    ...         print("still running; interrupted:", hold.interrupted)
    ... except KeyboardInterrupt:
    ...     print("raised at the end")
    still running; interrupted: True
    raised at the end
    """
    if not _engage():
        yield Hold(outermost=False)
        return
    hold = Hold(outermost=_state.depth == 0)
    _state.depth += 1

    def leave() -> int:
        _state.depth -= 1
        caught = 0
        if _state.depth == 0:
            caught, _state.caught = _state.caught, 0
        _release()
        return caught

    try:
        yield hold
    except KeyboardInterrupt:  # already interrupted: the held one is the same request
        leave()
        raise
    except BaseException:
        if leave():
            raise KeyboardInterrupt
        raise
    if leave():
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_requests(on_request: Callable[[], object] | None = None, *,
                  raise_at_exit: bool = True) -> Iterator[StopRequest]:
    """Turn SIGINT into a :class:`StopRequest` inside the block (see the module doc).

    ``on_request`` is called when the stop is requested (at once if it
    already was, in an outer block).  When the outermost block ends
    normally with a request that no :func:`check` raised, it raises
    ``KeyboardInterrupt`` then, unless ``raise_at_exit=False`` (the code
    inside decided that the work it finished was worth keeping).
    """
    engaged = _engage()
    outer = _state.stop if engaged else None
    request = outer if outer is not None else StopRequest()
    if engaged and outer is None:
        _state.stop = request
    if on_request is not None:
        request.callbacks.append(on_request)
        if request.requested:
            on_request()

    def leave() -> None:
        if on_request is not None:
            request.callbacks.remove(on_request)
        if engaged:
            if outer is None:
                _state.stop = None
            _release()

    try:
        yield request
    except BaseException:
        leave()
        raise
    leave()
    if outer is None and raise_at_exit and request.requested and not request.raised:
        raise KeyboardInterrupt


def check() -> None:
    """Raise ``KeyboardInterrupt`` if the open stop region has a requested stop (else nothing)."""
    if _state.stop is not None and threading.current_thread() is threading.main_thread():
        _state.stop.check()


def requested() -> bool:
    """True when the open stop region had a Ctrl-C (whether or not it was raised yet)."""
    return (_state.stop is not None and threading.current_thread() is threading.main_thread()
            and _state.stop.requested)


def is_duckdb_interrupt(exc: BaseException) -> bool:
    """True for the error DuckDB raises when a SIGINT interrupted one of its statements.

    >>> is_duckdb_interrupt(RuntimeError("Query interrupted")), is_duckdb_interrupt(RuntimeError("x"))
    (True, False)
    """
    return isinstance(exc, RuntimeError) and str(exc) == "Query interrupted"
