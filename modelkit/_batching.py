"""Micro-batching: concurrent single-record calls coalesced into one vectorized call.

A model loaded with ``batching=`` gets one :class:`Batcher`. Callers validate their record in
their own thread (or on their event loop), queue the values and wait; the batcher's
:class:`~modelkit._worker.Worker` takes what is queued, runs it as one table, and hands each
caller its row of the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import numbers
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._worker import Worker, after_fork_in_child

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
        # Callers answered by the last batch: in a steady stream they come back, so the worker
        # waits for that many; after a lone caller it is 1, and the next lone caller never waits.
        self._expected = 1
        self._worker: Worker[Call] = Worker(
            self._answer,
            name=f"modelkit-batching-{name}",
            max_batch=config.max_batch_size,
            max_wait=config.max_wait_ms / 1000,
            linger=self._is_expected,
        )
        after_fork_in_child(self._after_fork_in_child)

    @property
    def pending(self) -> int:
        """Calls queued and not yet taken into a batch."""
        return self._worker.pending

    # -- callers ------------------------------------------------------------------------------

    def enter(self) -> None:
        """Count a caller validating its record, so that the worker waits for it."""
        self._worker.announce()

    def leave(self) -> None:
        """Stop counting a caller whose record failed validation."""
        self._worker.withdraw()

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
        # Refused once closed, or when no thread can start (the interpreter is shutting down).
        return self._worker.put(call, announced=True)

    def close(self) -> None:
        """Answer every queued call, then stop the worker and wait for it. Idempotent."""
        self._worker.close()

    # -- the worker ---------------------------------------------------------------------------

    def _is_expected(self, taken: int) -> bool:
        """Whether a batch of ``taken`` calls should wait for more: as many callers as the
        last batch answered tend to come back."""
        return taken < self._expected

    def _answer(self, calls: list[Call]) -> None:
        # A method of its own, so that the model is referenced only while its batch runs.
        self._expected = len(calls)
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
        # The child has none of the parent's callers (its worker resets itself).
        self._expected = 1


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    # A closed loop raises RuntimeError: nobody awaits the answer any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_set_done, future)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(None)
