"""``modelkit serve``: the JSON endpoints and the Open Inference Protocol on waitress, with
health checks."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._serving import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_RESPONSE_SIZE
from ._app import EXIT_OK, LOG_HANDLER, ByteSize, command, trust_type_option, usage_error
from ._common import describe_bundle

if TYPE_CHECKING:
    from .. import Registry

__all__ = ["serve"]


def _url_prefix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.startswith("/"):
        raise click.BadParameter(f"must start with '/', got {value!r}", ctx, param)
    if value.rstrip("/") == "/v2" or value.startswith("/v2/"):
        raise click.BadParameter("/v2 is the Open Inference Protocol's", ctx, param)
    return value


@command(
    "serve",
    epilog=(
        "\b\nExamples:\n"
        "  modelkit serve bundles/churn --port 8000\n"
        "  modelkit serve models.toml --lock models.lock --host 0.0.0.0\n"
        "  modelkit serve bundles/churn --metrics"
    ),
)
@click.argument("path", metavar="PATH|CONFIG", type=click.Path())
@click.option(
    "--lock",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="A lock file the config's bundles must match.",
)
@click.option(
    "--host", default="127.0.0.1", metavar="HOST", help="Interface to listen on (127.0.0.1)."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    metavar="PORT",
    help="Port to listen on (8000; 0 picks a free one).",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=4, metavar="N", help="Worker threads (4)."
)
@click.option(
    "--url-prefix",
    default="/models",
    metavar="PREFIX",
    callback=_url_prefix,
    help="The endpoints' prefix (/models).",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BATCH_SIZE,
    metavar="N",
    help="Most records (or tensor rows) per predict request (1,000).",
)
@click.option(
    "--max-body-size",
    type=ByteSize(),
    default=DEFAULT_MAX_BODY_SIZE,
    metavar="BYTES",
    help="Largest request body, refused before it is read (10MiB; takes KiB, MiB, GiB).",
)
@click.option(
    "--max-response-size",
    type=ByteSize(),
    default=DEFAULT_MAX_RESPONSE_SIZE,
    metavar="BYTES",
    help="Largest predict answer, refused before it is built (50MiB).",
)
@click.option(
    "--metrics",
    is_flag=True,
    help="Expose the models' metrics at /metrics in Prometheus's format (the 'prometheus' extra).",
)
@click.option(
    "--report/--no-report",
    default=True,
    help="Serve each model's report page at <prefix>/<name>/report (on by default).",
)
@trust_type_option
def serve(
    *,
    path: str,
    lock: str | None,
    host: str,
    port: int,
    threads: int,
    url_prefix: str,
    max_batch_size: int,
    max_body_size: int,
    max_response_size: int,
    metrics: bool,
    report: bool,
    trusted_types: tuple[str, ...],
) -> int:
    """Serve bundles over HTTP: the JSON endpoints and the Open Inference Protocol on waitress,
    with health checks.

    PATH is one bundle (served under its manifest name) or a registry config (.toml). Needs the
    'serve' extra (waitress). Endpoints: GET /healthz (the process is up), GET /readyz (200 once
    the models are loaded, checked and warmed up, 503 before), under the prefix (default
    /models): GET /models, GET /models/<name>, POST /models/<name>/predict, GET
    /models/<name>/report (the model's report page, unless --no-report), and the Open Inference
    Protocol v2 under /v2 (GET /v2/models/<name>, POST /v2/models/<name>/infer...); with
    --metrics, GET /metrics.
    SIGTERM or Ctrl-C stops it after the requests in flight.
    """
    import _thread
    import signal
    import threading

    from .._deps import require
    from ._wsgi import Application, Models

    is_config = Path(path).suffix.lower() == ".toml"
    if lock is not None and not is_config:
        raise usage_error("--lock goes with a registry config (.toml), not a single bundle")
    if trusted_types and is_config:
        raise usage_error(
            "--trust-type goes with a single bundle; a registry config trusts types in each "
            "model's table (trusted_types = [...])"
        )
    prefix = url_prefix.rstrip("/")
    if metrics and prefix == "/metrics":
        raise usage_error("--url-prefix /metrics would hide the models' index behind --metrics")
    waitress_server = require("waitress.server", extra="serve", feature="modelkit serve")
    exported = None
    if metrics:
        from ._metrics import PrometheusMetrics

        exported = PrometheusMetrics()
    meter_provider = None if exported is None else exported.meter_provider
    build = _registry_builder(
        path, lock, is_config=is_config, meter_provider=meter_provider, trusted_types=trusted_types
    )
    models = Models(build)
    app = Application(
        models,
        prefix,
        max_batch_size=max_batch_size,
        max_body_size=max_body_size,
        max_response_size=max_response_size,
        metrics=exported,
        has_report=report,
    )
    failures: list[BaseException] = []

    # A server logs: what it loaded, and waitress's own warnings (a full task queue...).
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=log_format)
    for handler in logging.getLogger("modelkit").handlers:
        if handler.get_name() == LOG_HANDLER:
            handler.setFormatter(logging.Formatter(log_format))
            handler.setLevel(logging.INFO)
    # waitress buffers a whole body (to a temporary file) before the app sees it: its own limit
    # keeps that to the body limit, and its refusals get the endpoints' JSON error shape.
    listeners: dict[int, Any] = {}
    server = waitress_server.create_server(
        app,
        map=listeners,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=max_body_size + 1,  # waitress refuses at >= this
    )
    _answer_server_errors_in_json(list(listeners.values()), max_body_size)

    def load_models() -> None:
        try:
            models.load()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
            _thread.interrupt_main(signal.SIGTERM)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        threading.Thread(target=load_models, name="modelkit-load", daemon=True).start()
        shown = server.effective_host
        if ":" in str(shown):
            shown = f"[{shown}]"
        scraped = ", metrics at /metrics" if exported is not None else ""
        click.echo(
            f"Serving on http://{shown}:{server.effective_port} (models under {prefix or '/'}, "
            f"the Open Inference Protocol under /v2, health at /healthz and /readyz{scraped}); "
            "Ctrl-C to stop",
            err=True,
        )
        server.run()  # returns on SIGTERM or Ctrl-C, once the requests in flight are answered
    except KeyboardInterrupt:
        pass  # stopped before (or after) the loop: the same clean stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):
            server.close()
        models.close()
        if exported is not None:
            exported.close()
    if failures:
        raise failures[0]
    click.echo("Stopped.", err=True)
    return EXIT_OK


def _registry_builder(
    path: str,
    lock: str | None,
    *,
    is_config: bool,
    meter_provider: Any,
    trusted_types: tuple[str, ...] = (),
) -> Callable[[], Registry]:
    """What loads the models: a registry config with its lock file, or one verified bundle.

    ``meter_provider`` (``None``: the process-wide one) takes every model's metrics;
    ``trusted_types`` are the single bundle's (a config's tables hold their own).
    """
    from .. import Registry

    target = Path(path)
    if is_config:
        from .._config import read_config, read_lock

        config = target.resolve()
        pinned = None if lock is None else Path(lock).resolve()
        # Read and checked now, so that a malformed config or lock file fails before the port
        # is opened; the bundles load (checked and warmed up, as a registry loads them) in the
        # background, before /readyz says ready.
        read_config(config)
        if pinned is not None:
            read_lock(pinned)
        return lambda: Registry.from_config(config, lock=pinned, meter_provider=meter_provider)
    described = describe_bundle(path)  # fails now, before the port is opened
    # Loaded with the digest it was verified with (a bundle swapped meanwhile is refused).
    table: dict[str, Any] = {"path": str(target.resolve()), "sha256": described.digest}
    if trusted_types:
        table["trusted_types"] = list(trusted_types)
    models = {described.manifest.name: table}
    return lambda: Registry.from_config({"models": models}, meter_provider=meter_provider)


def _answer_server_errors_in_json(listeners: Sequence[Any], max_body_size: int) -> None:
    """Make waitress answer the requests it refuses itself (a body over the limit, a malformed
    request) in the endpoints' JSON error shape, instead of its plain-text page."""
    from waitress.channel import HTTPChannel  # type: ignore[import-untyped]
    from waitress.server import BaseWSGIServer  # type: ignore[import-untyped]
    from waitress.task import ErrorTask  # type: ignore[import-untyped]

    class JsonErrorTask(ErrorTask):  # type: ignore[misc]  # waitress ships no types
        def execute(self) -> None:
            problem = self.request.error
            code, reason = int(problem.code), str(problem.reason)
            if code == 413:
                kind = "request_too_large"
                message = (
                    f"The request body is larger than the {max_body_size} bytes this server "
                    "accepts (--max-body-size); send fewer records per request."
                )
            else:
                kind = "_".join(reason.lower().split())
                message = f"{reason}: {problem.body}"
            path = str(getattr(self.request, "path", "") or "")
            if path == "/v2" or path.startswith("/v2/"):  # the protocol's own error shape
                body = json.dumps({"error": message}).encode()
            else:
                body = json.dumps({"error": {"type": kind, "message": message}}).encode()
            self.status = f"{code} {reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):  # type: ignore[misc]
        error_task_class = JsonErrorTask

    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = JsonErrorChannel
