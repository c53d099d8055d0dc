"""Hooks: user code called around every prediction, isolated so it can never change one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._spec import Signature

__all__ = ["Hook", "PredictionContext", "add_hook", "remove_hook"]

logger = logging.getLogger("modelkit")


class CalledModel(Protocol):
    """What a hook may read of the model it observes (a :class:`modelkit.Model`)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def signature(self) -> Signature: ...


@dataclass
class PredictionContext:
    """What a hook knows about one call.

    Attributes:
        model: the model called.
        inputs: the record (``predict``) or batch (``predict_batch``) exactly as the caller passed
            it: raw user data, so a hook must not log it unless the application wants that.
        batch_size: the number of records (1 for ``predict``; ``None`` if it cannot be told).
        is_batch: whether the call was ``predict_batch``.
        start_time: ``time.perf_counter()`` when the call started.
        duration: seconds the call took; set before ``after_predict`` and ``on_error``.
        extra: free space for hooks to pass values from ``before_predict`` to the later calls.
    """

    model: CalledModel
    inputs: Any
    batch_size: int | None
    is_batch: bool
    start_time: float
    duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Hook(Protocol):
    """Called around every prediction of the models it is added to.

    Implement any of the three methods (a hook without one of them is simply not called for it).
    A hook runs on the caller's thread, inside the prediction's span; an exception it raises is
    logged on the ``modelkit`` logger and counted in ``modelkit.hook.errors``, and never changes
    the prediction or its error. Keep hooks fast: their time is the caller's time.
    """

    def before_predict(self, ctx: PredictionContext) -> None:
        """Called before inputs are validated."""

    def after_predict(self, ctx: PredictionContext, outputs: Any) -> None:
        """Called with the output (``predict``) or :class:`~modelkit.Predictions` (batch)."""

    def on_error(self, ctx: PredictionContext, exc: BaseException) -> None:
        """Called when the call raises, before the exception reaches the caller."""


class HookList:
    """A copy-on-write list of hooks: reading it on the hot path needs no lock."""

    def __init__(self) -> None:
        self.hooks: tuple[Hook, ...] = ()
        self._lock = threading.Lock()

    def add(self, hook: Hook) -> None:
        _check_hook(hook)
        with self._lock:
            self.hooks = (*self.hooks, hook)

    def remove(self, hook: Hook) -> None:
        with self._lock:
            if hook not in self.hooks:
                raise ValueError(f"{hook!r} is not registered")
            hooks = list(self.hooks)
            hooks.remove(hook)
            self.hooks = tuple(hooks)


def _check_hook(hook: object) -> None:
    if not any(
        callable(getattr(hook, name, None))
        for name in ("before_predict", "after_predict", "on_error")
    ):
        raise TypeError(
            f"{hook!r} is not a hook: it needs before_predict, after_predict or on_error."
        )


GLOBAL_HOOKS = HookList()


def add_hook(hook: Hook) -> None:
    """Call ``hook`` around every prediction of every model in this process.

    Raises:
        TypeError: the object has none of the hook methods.
    """
    GLOBAL_HOOKS.add(hook)


def remove_hook(hook: Hook) -> None:
    """Stop calling a hook added with :func:`add_hook`.

    Raises:
        ValueError: the hook was not added.
    """
    GLOBAL_HOOKS.remove(hook)


_last_reported: dict[int, float] = {}
# A failing hook is counted on every call but logged at most this often, so logs stay readable.
_REPORT_INTERVAL = 60.0


def report_hook_failure(hook: Hook, exc: BaseException) -> None:
    """Log a hook's exception on the ``modelkit`` logger, at most once a minute per hook."""
    now = time.monotonic()
    key = id(hook)
    if now - _last_reported.get(key, -_REPORT_INTERVAL) < _REPORT_INTERVAL:
        return
    _last_reported[key] = now
    logger.warning(
        "Hook %r raised %s; the prediction was not affected (further failures of this hook are "
        "counted in modelkit.hook.errors and logged at most once a minute).",
        hook,
        type(exc).__name__,
        exc_info=exc,
    )


def call_hooks(
    hooks: tuple[Hook, ...],
    method: str,
    args: tuple[Any, ...],
    on_failure: Callable[[Hook, BaseException], None],
) -> None:
    """Call ``method`` on every hook that has it; a failure is reported, never raised."""
    for hook in hooks:
        function = getattr(hook, method, None)
        if function is None:
            continue
        try:
            function(*args)
        except Exception as exc:  # noqa: BLE001 - a hook must never change a prediction
            on_failure(hook, exc)
