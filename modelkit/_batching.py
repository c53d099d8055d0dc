"""Micro-batching: concurrent single-record calls coalesced into one vectorized call.

A model loaded with ``batching=`` gets one :class:`Batcher`. Callers validate their record in
their own thread (or on their event loop), queue the values and wait; one worker thread takes
what is queued, runs it as one table, and hands each caller its row of the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import numbers
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Batcher", "Batching", "Call"]

Values = tuple[Any, ...]
#: Runs the values of several records as one vectorized call and returns the runtime's fields.
RunRows = Callable[[list[Values]], Mapping[str, Any]]


@dataclass(frozen=True)
class Batching:
    """How a model coalesces concurrent single-record calls into one vectorized call.

    Pass it to :func:`modelkit.load` (``batching=True`` means ``Batching()``). Worth it when many
    threads or tasks call ``predict``/``apredict`` with one record each on a CPU-bound model,
    whose cost per call dwarfs its cost per row (scikit-learn pipelines, most of all).

    Args:
        max_batch_size: the most records one coalesced call runs.
        max_wait_ms: how long the worker may hold a batch open, after taking its first record,
            for callers already on their way; a caller alone after a quiet spell is not held
            (the first one after a burst waits at most this long, once).

    Raises:
        ValueError: ``max_batch_size`` is not an integer of at least 1, or ``max_wait_ms`` is
            not a finite number of at least 0.
    """

    max_batch_size: int = 64
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        size: object = self.max_batch_size  # checked: callers may pass anything
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(
                f"Batching max_batch_size must be an integer of at least 1, got {size!r}."
            )
        wait: object = self.max_wait_ms
        if (
            isinstance(wait, bool)
            or not isinstance(wait, numbers.Real)
            or not math.isfinite(wait)
            or wait < 0
        ):
            raise ValueError(
                f"Batching max_wait_ms must be a finite number of milliseconds, at least 0, "
                f"got {wait!r}."
            )


class Call:
    """One queued record: its validated values, then the answer the worker leaves for it.

    ``fields`` stays ``None`` when the coalesced call failed: the caller then runs its record
    alone, so that it gets its own answer or its own error.
    """

    __slots__ = ("_notify", "fields", "index", "size", "values")

    def __init__(self, values: Values, notify: Callable[[], None]) -> None:
        self.values = values
        self._notify = notify
        self.fields: Mapping[str, Any] | None = None
        self.index = 0
        self.size = 0

    def answer(self, fields: Mapping[str, Any] | None, index: int, size: int) -> None:
        self.fields = fields
        self.index = index
        self.size = size
        self._notify()


class Batcher:
    """A queue of single records and the worker thread that runs them in batches.

    The worker holds only a weak reference to ``run`` (a model's bound method), so a model
    nobody references is collected, and its finalizer closes the batcher.

    Args:
        run: runs a batch of validated values; an exception makes each caller run its own.
        config: the batch size and wait.
        name: the model's name, for the worker thread's name.
    """

    def __init__(self, run: RunRows, config: Batching, *, name: str) -> None:
        self._run = weakref.WeakMethod(run)
        self.config = config
        self._name = name
        self._is_closed = False
        self._reset()
        _BATCHERS.add(self)

    def _reset(self) -> None:
        # Reentrant: a model's finalizer (which closes its batcher) may run on the worker
        # thread, from a garbage collection that starts while the worker holds the lock.
        self._condition = threading.Condition(threading.RLock())
        self._queue: deque[Call] = deque()
        # Callers validating a record on their way to submit(): list.append and list.pop are
        # atomic, so the hot path counts them without taking the lock twice.
        self._arriving: list[None] = []
        # Callers answered by the last batch: in a steady stream they come back, so the worker
        # waits for that many; after a lone caller it is 1, and the next lone caller never waits.
        self._expected = 1
        self._worker: threading.Thread | None = None

    # -- callers ------------------------------------------------------------------------------

    def enter(self) -> None:
        """Count a caller validating its record, so that the worker waits for it."""
        self._arriving.append(None)

    def leave(self) -> None:
        """Stop counting a caller whose record failed validation."""
        self._arriving.pop()

    def submit(self, values: Values) -> Call | None:
        """Queue a caller's values and block until the worker answers (after :meth:`enter`).

        Returns:
            The answered call, or ``None`` when the batcher is closed: run the record directly.
        """
        # A lock acquired twice is the cheapest way to park a thread until another frees it.
        lock = threading.Lock()
        lock.acquire()
        call = Call(values, lock.release)
        if not self._enqueue(call):
            return None
        lock.acquire()
        return call

    async def asubmit(self, values: Values) -> Call | None:
        """:meth:`submit` for a coroutine: the event loop keeps running while the worker works."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        call = Call(values, functools.partial(_wake, loop, future))
        if not self._enqueue(call):
            return None
        await future
        return call

    def _enqueue(self, call: Call) -> bool:
        with self._condition:
            self._arriving.pop()
            if self._is_closed:
                return False
            if self._worker is None and not self._start():
                return False
            self._queue.append(call)
            self._condition.notify()
        return True

    def _start(self) -> bool:
        worker = threading.Thread(
            target=self._work, name=f"modelkit-batching-{self._name}", daemon=True
        )
        try:
            worker.start()
        except RuntimeError:  # no new threads while the interpreter shuts down: run directly
            return False
        self._worker = worker
        return True

    def close(self) -> None:
        """Answer every queued call, then stop the worker and wait for it. Idempotent."""
        with self._condition:
            self._is_closed = True
            self._condition.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    # -- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while calls := self._take():
            self._answer(calls)

    def _take(self) -> list[Call]:
        """The next batch: what is queued, plus callers on their way within the wait."""
        max_size = self.config.max_batch_size
        max_wait = self.config.max_wait_ms / 1000
        condition = self._condition
        with condition:
            queue = self._queue
            while not queue:
                if self._is_closed:
                    return []
                condition.wait()
            calls = [queue.popleft()]
            deadline = None
            while len(calls) < max_size:
                if queue:
                    calls.append(queue.popleft())
                    continue
                if self._is_closed or not (self._arriving or len(calls) < self._expected):
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + max_wait
                elif now >= deadline:
                    break
                condition.wait(deadline - now)
            self._expected = len(calls)
        return calls

    def _answer(self, calls: list[Call]) -> None:
        # A method of its own, so that the model is referenced only while its batch runs.
        run = self._run()
        fields = None
        if run is not None:
            try:
                fields = run([call.values for call in calls])
            except Exception:  # noqa: BLE001 - each caller runs its record alone and gets its own error
                fields = None
        size = len(calls)
        for index, call in enumerate(calls):
            call.answer(fields, index, size)

    def _after_fork_in_child(self) -> None:
        # The child has no worker thread and none of the parent's callers: start afresh.
        self._reset()


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    # A closed loop raises RuntimeError: nobody awaits the answer any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_set_done, future)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(None)


_BATCHERS: weakref.WeakSet[Batcher] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for batcher in list(_BATCHERS):
        batcher._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
