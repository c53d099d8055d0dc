"""One background worker (a bounded queue and a daemon thread), and modelkit's fork handling.

Shadow traffic, micro-batching and the prediction log hand their work to a :class:`Worker`: a
caller queues an item without waiting, and one daemon thread, started with the first item,
handles the items in order, one at a time or in batches.

The module also holds modelkit's one ``os.register_at_fork`` registry. :func:`at_fork` and
:func:`after_fork_in_child` add callbacks to it; a bound method is held by a weak reference, so
registering never keeps an object alive. A forked child (a gunicorn worker after ``--preload``)
has none of its parent's threads: each :class:`Worker` starts there with an empty queue and a
new thread on its next item, and the items the parent had queued stay with the parent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from types import MethodType
from typing import Any, Generic, Literal, TypeVar

__all__ = ["Worker", "after_fork_in_child", "at_fork"]

T = TypeVar("T")

logger = logging.getLogger("modelkit")

# -- fork handling ------------------------------------------------------------------------------

_Phase = Literal["before", "after_in_parent", "after_in_child"]
_Reference = Callable[[], Callable[[], object] | None]

# Taken by registration and held across the fork, so that the callbacks of an object created
# in another thread meanwhile are not half registered. Always taken before any lock a callback
# takes, never while holding one.
_lock = threading.Lock()
_callbacks: list[tuple[_Phase, _Reference]] = []
_live_after_pruning = 0


def at_fork(
    *,
    before: Callable[[], object] | None = None,
    after_in_parent: Callable[[], object] | None = None,
    after_in_child: Callable[[], object] | None = None,
) -> None:
    """Run callbacks around every ``os.fork()`` of this process, in the order registered.

    ``before`` runs in the forking thread just before the fork (while it runs, no other object
    registers); ``after_in_parent`` and ``after_in_child`` run just after it, in the parent and
    in the child. A bound method is held by a weak reference: its object is not kept alive, and
    once it is collected its callback is skipped. A callback that raises does not stop the
    others. Nothing happens on platforms without ``fork``.
    """
    global _live_after_pruning  # noqa: PLW0603 - the registry's size after its last pruning
    phases: tuple[tuple[_Phase, Callable[[], object] | None], ...] = (
        ("before", before),
        ("after_in_parent", after_in_parent),
        ("after_in_child", after_in_child),
    )
    with _lock:
        for phase, callback in phases:
            if callback is not None:
                _callbacks.append((phase, _reference(callback)))
        # Prune the callbacks of collected objects now and then, not on every registration.
        if len(_callbacks) > 2 * max(_live_after_pruning, 64):
            _callbacks[:] = [entry for entry in _callbacks if entry[1]() is not None]
            _live_after_pruning = len(_callbacks)


def after_fork_in_child(callback: Callable[[], object]) -> None:
    """Run ``callback`` in the child after every ``os.fork()`` (see :func:`at_fork`)."""
    at_fork(after_in_child=callback)


def _reference(callback: Callable[[], object]) -> _Reference:
    if isinstance(callback, MethodType):
        return weakref.WeakMethod(callback)
    return lambda: callback


def _run(phase: _Phase) -> None:
    for registered, reference in _callbacks:
        if registered != phase:
            continue
        callback = reference()
        if callback is not None:
            with contextlib.suppress(Exception):  # one object's failure must not stop the rest
                callback()


def _before_fork() -> None:
    _lock.acquire()
    _run("before")


def _after_fork_in_parent() -> None:
    try:
        _run("after_in_parent")
    finally:
        _lock.release()


def _after_fork_in_child() -> None:
    global _lock  # noqa: PLW0603 - replaced once per fork, in the child only
    _lock = threading.Lock()  # the child's copy is held by a thread that is not there
    _run("after_in_child")


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


# -- the worker ---------------------------------------------------------------------------------


class Worker(Generic[T]):
    """A bounded queue of items, and the daemon thread that hands them to ``handle`` in order.

    The thread starts with the first item, so that building a worker starts nothing. It holds
    the worker only while items are queued or being handled: an idle worker whose owner is
    collected is collected too, and its thread ends.

    Args:
        handle: called on the worker thread with each batch of items (a list of one unless
            ``max_batch`` is larger). An exception is logged, and the next items are handled.
        name: the thread's name.
        max_size: the most items waiting (those being handled do not count); :meth:`put`
            refuses more. ``None``: no bound.
        max_batch: the most items one call of ``handle`` gets.
        max_wait: seconds the thread may hold a batch open, after taking its first item, for
            items on their way: those announced (:meth:`announce`) and not yet put, and those
            ``linger`` expects.
        linger: given the size of the batch so far, whether to wait for more items even when
            none is announced (called on the worker thread, with the queue's lock held).
    """

    def __init__(
        self,
        handle: Callable[[list[T]], object],
        *,
        name: str,
        max_size: int | None = None,
        max_batch: int = 1,
        max_wait: float = 0.0,
        linger: Callable[[int], bool] | None = None,
    ) -> None:
        self._handle = handle
        self.name = name
        self._queue: _Queue[T] = _Queue(max_size, max_batch, max_wait, linger)
        # A worker collected with its owner ends its thread (the thread holds only the queue).
        weakref.finalize(self, self._queue.close).atexit = False
        after_fork_in_child(self._queue.reset)

    @property
    def pending(self) -> int:
        """Items queued and not yet taken by the thread."""
        return len(self._queue.items)

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._queue.is_closed

    def announce(self) -> None:
        """Count an item on its way (its caller is preparing it), so that a batch being
        gathered waits for it; :meth:`put` with ``announced=True``, or :meth:`withdraw`,
        uncounts it. Takes no lock (list appends are atomic)."""
        self._queue.on_the_way.append(None)

    def withdraw(self) -> None:
        """Uncount an announced item that will not be put after all."""
        self._queue.on_the_way.pop()

    def put(self, item: T, *, announced: bool = False) -> bool:
        """Queue ``item`` without waiting.

        Args:
            item: what to hand to ``handle``.
            announced: whether :meth:`announce` counted it (it is uncounted under the same
                lock that queues it, so that a batch never misses it in between).

        Returns:
            Whether it was queued: ``False`` when the queue is full (the item is dropped), the
            worker is closed, or no thread can start (the interpreter is shutting down).
        """
        queue = self._queue
        with queue.lock:
            if announced:
                queue.on_the_way.pop()
            if queue.is_closed:
                return False
            if queue.max_size is not None and len(queue.items) >= queue.max_size:
                return False
            if queue.thread is None and not self._start(queue):
                return False
            queue.items.append(item)
            if not queue.unfinished:
                queue.busy = self  # work accepted is done, even if the owner lets go meanwhile
            queue.unfinished += 1
            queue.has_items.notify()
        return True

    def _start(self, queue: _Queue[T]) -> bool:
        thread = threading.Thread(
            target=_serve, args=(weakref.ref(self), queue), name=self.name, daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # no new threads while the interpreter shuts down
            return False
        queue.thread = thread
        return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item queued so far has been handled.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            Whether they were handled in time.
        """
        queue = self._queue
        deadline = None if timeout is None else time.monotonic() + timeout
        with queue.all_done:
            while queue.unfinished:
                if deadline is None:
                    queue.all_done.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                queue.all_done.wait(remaining)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new items, let the thread handle those queued, and wait for it to end.

        Idempotent; called from the worker thread itself (by a finalizer), it does not wait.

        Args:
            timeout: seconds to wait at most; a thread still busy then is left to finish (it
                is a daemon thread, so it does not hold up the interpreter's exit).

        Returns:
            Whether the thread has ended (or never started).
        """
        queue = self._queue
        thread = queue.close()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _handle_batch(self, items: list[T]) -> None:
        try:
            self._handle(items)
        except Exception:
            logger.exception("modelkit: the %s thread failed to handle an item", self.name)


class _Queue(Generic[T]):
    """What the worker thread holds: the items and their lock, never the worker itself."""

    def __init__(
        self,
        max_size: int | None,
        max_batch: int,
        max_wait: float,
        linger: Callable[[int], bool] | None,
    ) -> None:
        self.max_size = max_size
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.linger = linger
        self.is_closed = False
        self.reset()

    def reset(self) -> None:
        """Start afresh: empty, and without a thread (a forked child has none of its parent's)."""
        # Reentrant: an owner's finalizer, which closes its worker, may run on the worker thread
        # from a garbage collection that starts while the thread holds the lock.
        self.lock = threading.RLock()
        self.has_items = threading.Condition(self.lock)
        self.all_done = threading.Condition(self.lock)
        self.items: deque[T] = deque()
        self.on_the_way: list[None] = []
        self.unfinished = 0
        self.thread: threading.Thread | None = None
        self.busy: Worker[T] | None = None

    def close(self) -> threading.Thread | None:
        with self.lock:
            self.is_closed = True
            self.has_items.notify_all()
            return self.thread

    def take(self) -> list[T]:
        """The next batch, waiting for its first item; empty once closed and drained."""
        with self.lock:
            items = self.items
            while not items:
                if self.is_closed:
                    return []
                self.has_items.wait()
            taken = [items.popleft()]
            deadline = None
            while len(taken) < self.max_batch:
                if items:
                    taken.append(items.popleft())
                    continue
                if self.is_closed:
                    break
                linger = self.linger
                if not (self.on_the_way or (linger is not None and linger(len(taken)))):
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.max_wait
                elif now >= deadline:
                    break
                self.has_items.wait(deadline - now)
            return taken

    def done(self, count: int) -> None:
        with self.lock:
            self.unfinished -= count
            if not self.unfinished:
                self.busy = None
                self.all_done.notify_all()


def _serve(worker: weakref.ref[Worker[Any]], queue: _Queue[Any]) -> None:
    while items := queue.take():
        try:
            _handle(worker, items)
        finally:
            queue.done(len(items))


def _handle(reference: weakref.ref[Worker[Any]], items: list[Any]) -> None:
    # A frame of its own, so that the worker is referenced only while its items are handled.
    worker = reference()
    if worker is not None:
        worker._handle_batch(items)
