"""Gunicorn settings for applications that load their models before forking (``--preload``).

Loading models in gunicorn's master and forking the workers shares the models' memory and fails
fast on a bad bundle. modelkit makes loaded models work in the workers (ONNX sessions and
background threads are rebuilt in each), but onnxruntime itself cannot shut a forked process
down: its native destructors wait on threads that exist only in the master, and the worker hangs
at exit until gunicorn kills it. Use these settings to exit workers cleanly::

    gunicorn --preload -c python:modelkit.gunicorn "app:create_app()"

or, from your own ``gunicorn.conf.py``::

    from modelkit.gunicorn import worker_exit
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from typing import Any

__all__ = ["worker_exit"]


def worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn's ``worker_exit`` hook: finish the worker's Python shutdown, then leave without
    running native destructors (onnxruntime's hang in a forked process).

    The worker's exit status is kept, Python's exit handlers run (log handlers are flushed,
    OpenTelemetry exporters shut down), and standard streams are flushed first.
    """
    status = _exit_status()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _exit_status() -> int:
    """The status the worker is exiting with: gunicorn calls the hook while its ``sys.exit``
    propagates."""
    exc = sys.exc_info()[1]
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    return 1 if exc is not None else 0
