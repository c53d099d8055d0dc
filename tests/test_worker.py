"""The background worker: a bounded queue, one daemon thread, clean close, fork handling."""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import warnings
import weakref
from typing import Any

import pytest

from modelkit._worker import Worker, after_fork_in_child, at_fork

# Generous: only a broken worker makes a test wait this long.
HANG = 30.0


class Recorder:
    """A handler that records what it gets, and holds on any item named ``"hold"``."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[Any]) -> None:
        if "hold" in items:
            self.holding.set()
            assert self.release.wait(HANG)
        self.batches.append(list(items))

    @property
    def items(self) -> list[Any]:
        return [item for batch in self.batches for item in batch]


def threads_named(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


def test_items_are_handled_in_order_on_a_daemon_thread_started_by_the_first_item() -> None:
    recorder = Recorder()
    worker: Worker[int] = Worker(recorder, name="test-order")
    assert threads_named("test-order") == []
    for item in range(5):
        assert worker.put(item)
    (thread,) = threads_named("test-order")
    assert thread.daemon
    assert worker.join(HANG)
    assert recorder.batches == [[0], [1], [2], [3], [4]]
    worker.close()


def test_a_full_queue_drops_items_without_waiting() -> None:
    recorder = Recorder()
    worker: Worker[str] = Worker(recorder, name="test-full", max_size=2)
    try:
        assert worker.put("hold")  # taken by the thread, which holds it
        assert recorder.holding.wait(HANG)
        assert worker.put("a")
        assert worker.put("b")
        assert worker.pending == 2
        assert not worker.put("c")  # the queue is full: refused at once, never waited for
    finally:
        recorder.release.set()
    assert worker.join(HANG)
    assert recorder.items == ["hold", "a", "b"]
    worker.close()


def test_close_handles_what_is_queued_then_ends_the_thread_and_refuses_more() -> None:
    recorder = Recorder()
    worker: Worker[str] = Worker(recorder, name="test-close")
    worker.put("hold")
    assert recorder.holding.wait(HANG)
    worker.put("a")
    worker.put("b")
    (thread,) = threads_named("test-close")
    closing = threading.Thread(target=worker.close)
    closing.start()
    recorder.release.set()
    closing.join(HANG)
    assert not closing.is_alive()
    assert recorder.items == ["hold", "a", "b"]
    assert not thread.is_alive()
    assert worker.is_closed
    assert not worker.put("late")
    assert worker.close()  # idempotent
    assert recorder.items == ["hold", "a", "b"]


def test_close_with_a_timeout_leaves_a_stuck_thread_behind() -> None:
    recorder = Recorder()
    worker: Worker[str] = Worker(recorder, name="test-stuck")
    worker.put("hold")
    assert recorder.holding.wait(HANG)
    try:
        assert worker.close(timeout=0.01) is False
        assert worker.join(timeout=0.01) is False
    finally:
        recorder.release.set()
    assert worker.join(HANG) is True
    assert worker.close(HANG) is True


def test_a_failing_handler_is_logged_and_the_next_items_are_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[int] = []

    def handle(items: list[int]) -> None:
        if items == [1]:
            raise RuntimeError("boom")
        handled.extend(items)

    worker: Worker[int] = Worker(handle, name="test-failing")
    for item in range(3):
        worker.put(item)
    assert worker.join(HANG)
    worker.close()
    assert handled == [0, 2]
    assert "test-failing" in caplog.text
    assert any(record.levelno == logging.ERROR for record in caplog.records)


def test_batches_take_what_is_queued_up_to_max_batch() -> None:
    recorder = Recorder()
    worker: Worker[Any] = Worker(recorder, name="test-batches", max_batch=3)
    worker.put("hold")
    assert recorder.holding.wait(HANG)
    for item in range(5):
        worker.put(item)
    recorder.release.set()
    assert worker.join(HANG)
    worker.close()
    assert recorder.batches == [["hold"], [0, 1, 2], [3, 4]]


def test_linger_holds_a_batch_open_for_items_on_their_way() -> None:
    recorder = Recorder()
    asked = threading.Event()

    def linger(taken: int) -> bool:
        asked.set()
        return taken < 3

    # The wait is long: the batch must close because the items came, not because time ran out.
    worker: Worker[int] = Worker(
        recorder, name="test-linger", max_batch=10, max_wait=HANG, linger=linger
    )
    worker.put(0)
    assert asked.wait(HANG)  # the thread holds the batch open for more
    worker.put(1)
    worker.put(2)
    assert worker.join(HANG)
    worker.close()
    assert recorder.batches == [[0, 1, 2]]


def test_a_batch_waits_for_items_announced_on_their_way() -> None:
    recorder = Recorder()
    # The wait is long: the batch must close because the items came, not because time ran out.
    worker: Worker[int] = Worker(recorder, name="test-announce", max_batch=10, max_wait=HANG)
    worker.announce()
    worker.announce()
    worker.announce()
    worker.withdraw()  # one caller gave up (its record was invalid)
    assert worker.put(0)
    assert worker.put(1, announced=True)
    assert worker.put(2, announced=True)
    assert worker.join(HANG)
    assert worker.put(3)  # nothing announced: handled alone, at once
    assert worker.join(HANG)
    worker.close()
    assert recorder.batches == [[0, 1, 2], [3]]


def test_an_idle_worker_is_collected_with_its_owner_and_its_thread_ends() -> None:
    class Owner:
        def __init__(self) -> None:
            self.seen: list[int] = []
            self.worker: Worker[int] = Worker(self.handle, name="test-owned")

        def handle(self, items: list[int]) -> None:
            self.seen.extend(items)

    owner = Owner()
    owner.worker.put(1)
    assert owner.worker.join(HANG)
    (thread,) = threads_named("test-owned")
    collected = weakref.ref(owner)
    del owner
    gc.collect()
    assert collected() is None
    thread.join(HANG)
    assert not thread.is_alive()


def test_work_accepted_is_done_even_if_the_owner_lets_go() -> None:
    recorder = Recorder()
    worker: Worker[str] = Worker(recorder, name="test-let-go")
    worker.put("hold")
    assert recorder.holding.wait(HANG)
    worker.put("queued")
    (thread,) = threads_named("test-let-go")
    del worker
    gc.collect()
    recorder.release.set()
    thread.join(HANG)  # once its work is done, the abandoned worker ends its thread
    assert not thread.is_alive()
    assert recorder.items == ["hold", "queued"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_fresh_queue_and_thread_without_the_parents_items() -> None:
    recorder = Recorder()
    worker: Worker[str] = Worker(recorder, name="test-fork")
    worker.put("hold")  # the parent's thread holds this one...
    assert recorder.holding.wait(HANG)
    worker.put("parent")  # ...and this one waits behind it
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a threaded process may deadlock: that is what the
        # fork handling is for, and what this test checks.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        os.close(read)
        try:
            pending = worker.pending
            worker.put("child")
            done = worker.join(HANG)
            report = [pending, done, recorder.items, len(threads_named("test-fork"))]
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        pending, done, handled, threads = json.loads(pipe.read())
    assert os.waitstatus_to_exitcode(status) == 0
    assert (pending, done, threads) == (0, True, 1)
    assert handled == ["child"]  # the parent's items are not replayed in the child
    recorder.release.set()
    assert worker.join(HANG)
    worker.close()
    assert recorder.items == ["hold", "parent"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_callbacks_run_in_their_phase() -> None:
    calls: list[str] = []

    class Lockish:
        def before(self) -> None:
            calls.append("before")

        def parent(self) -> None:
            calls.append("parent")

        def child(self) -> None:
            calls.append("child")

    owner = Lockish()
    at_fork(before=owner.before, after_in_parent=owner.parent, after_in_child=owner.child)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: threads in pytest
        pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.write(write, json.dumps(calls).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        assert json.loads(pipe.read()) == ["before", "child"]
    assert calls == ["before", "parent"]


def test_fork_callbacks_do_not_keep_their_object_alive() -> None:
    class Owner:
        def reset(self) -> None:
            pass

    owner = Owner()
    after_fork_in_child(owner.reset)
    collected = weakref.ref(owner)
    del owner
    gc.collect()
    assert collected() is None
