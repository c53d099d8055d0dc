"""Flask integration: the application's models by name in every view, and JSON endpoints.

``ModelKit`` builds a :class:`modelkit.Registry` for each Flask application from its
``MODELKIT_*`` configuration; ``models`` is the current application's registry::

    from flask import Flask, request
    from modelkit.flask import ModelKit, models

    kit = ModelKit(url_prefix="/models")   # optional JSON endpoints under /models

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["MODELKIT_MODELS"] = {"churn": "bundles/churn"}
        kit.init_app(app)

        @app.post("/score")
        def score():
            return models["churn"].predict(request.get_json()).to_dict()

        return app

The endpoints are those of :mod:`modelkit._serving` (the Django integration serves the same
bodies and statuses), and with ``oip=True`` the Open Inference Protocol of :mod:`modelkit._oip`
under ``/v2``; this module maps Flask requests and responses onto them, and turns Flask's own
errors on those URLs (405, 413 from ``MAX_CONTENT_LENGTH``, unknown paths) into the same
JSON error shape. The body, batch and response limits (``MODELKIT_MAX_BODY_SIZE``,
``MODELKIT_MAX_BATCH_SIZE``, ``MODELKIT_MAX_RESPONSE_SIZE``) are enforced there, before any work.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import flask
    from werkzeug.exceptions import HTTPException
    from werkzeug.local import LocalProxy
    from werkzeug.routing import PathConverter
except ImportError:  # pragma: no cover - exercised only where Flask is not installed
    from ._deps import require

    require("flask", extra="flask", feature="The Flask integration (modelkit.flask)")
    raise

from ._config import RegistryConfig, read_config, read_lock, resolve
from ._oip import OpenInference
from ._openapi import openapi_document
from ._registry import Registry
from ._serving import (
    ANY_METHOD,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    READ_METHODS,
    ROUTING_KEY_HEADER,
    Reply,
    Service,
    allow_header,
    error,
    no_endpoint,
    refused_method,
)
from .errors import BundleError

__all__ = ["ModelKit", "ModelKitState", "models"]

logger = logging.getLogger("modelkit")

#: Where ``init_app`` keeps an application's :class:`ModelKitState`.
EXTENSION_KEY = "modelkit"
_SETTINGS = (
    "MODELKIT_MODELS",
    "MODELKIT_CONFIG",
    "MODELKIT_LOCK",
    "MODELKIT_LAZY",
    "MODELKIT_MAX_BATCH_SIZE",
    "MODELKIT_MAX_BODY_SIZE",
    "MODELKIT_MAX_RESPONSE_SIZE",
)


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What ``init_app`` read and checked: enough to build the registry now or on first use."""

    document: dict[str, Any]
    lock: Path | Mapping[str, Any] | None
    base: Path
    is_lazy: bool
    max_batch_size: int | None
    max_body_size: int | None
    max_response_size: int | None

    def build(self) -> Registry:
        return Registry.from_config(self.document, lock=self.lock, base_dir=self.base)


def _plan(config: Mapping[str, Any], root: Path) -> _Plan:
    """Read and check an application's ``MODELKIT_*`` keys, without loading any bundle.

    Raises:
        ValueError: an unknown ``MODELKIT_*`` key, a value of the wrong type, a malformed model
            entry (the message names the key: ``models.churn.canary.weight``), or a model
            named both in ``MODELKIT_MODELS`` and in the ``MODELKIT_CONFIG`` file.
        BundleError: the config or lock file is missing or unreadable.
    """
    for key in config:
        if isinstance(key, str) and key.startswith("MODELKIT_") and key not in _SETTINGS:
            near = difflib.get_close_matches(key, _SETTINGS, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise ValueError(
                f"Unknown Flask config key {key!r}; modelkit reads {list(_SETTINGS)}.{hint}"
            )

    configs: list[RegistryConfig] = []
    models = config.get("MODELKIT_MODELS")
    if models is not None:
        if not isinstance(models, Mapping):
            raise ValueError(
                "MODELKIT_MODELS must map model names to a bundle path or a table of options "
                f"({{'churn': 'bundles/churn'}}), got {type(models).__name__}."
            )
        configs.append(read_config({"models": models}, base_dir=root, label="MODELKIT_MODELS"))
    config_file = config.get("MODELKIT_CONFIG")
    if config_file is not None:
        path = resolve(_path_setting("MODELKIT_CONFIG", config_file), root)
        label = f"MODELKIT_CONFIG {str(path)!r}"
        try:
            configs.append(read_config(path, label=label))
        except BundleError as exc:
            raise BundleError(f"MODELKIT_CONFIG: {exc}", path=exc.path) from exc

    # One registry from both: each table's paths made absolute, relative to its own source.
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for source in configs:
        for name, table in source.document()["models"].items():
            if name in merged:
                raise ValueError(
                    f"models.{name} is configured twice, in {origins[name]} and in "
                    f"{source.label}; keep one of them."
                )
            merged[name] = table
            origins[name] = source.label

    lock = config.get("MODELKIT_LOCK")
    if lock is not None and not isinstance(lock, Mapping):
        lock = resolve(_path_setting("MODELKIT_LOCK", lock), root)
    if lock is not None:
        read_lock(lock)  # a missing or malformed lock file fails now, even with lazy loading

    is_lazy = config.get("MODELKIT_LAZY", False)
    if not isinstance(is_lazy, bool):
        raise ValueError(f"MODELKIT_LAZY must be True or False, got {is_lazy!r}.")
    return _Plan(
        {"models": merged},
        lock,
        root,
        is_lazy,
        max_batch_size=_limit(config, "MODELKIT_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE),
        max_body_size=_limit(config, "MODELKIT_MAX_BODY_SIZE", DEFAULT_MAX_BODY_SIZE),
        max_response_size=_limit(config, "MODELKIT_MAX_RESPONSE_SIZE", DEFAULT_MAX_RESPONSE_SIZE),
    )


def _limit(config: Mapping[str, Any], key: str, default: int) -> int | None:
    value = config.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{key} must be a positive integer or None (no limit), got {value!r}.")
    return None if value is None else int(value)


def _path_setting(key: str, value: Any) -> str | os.PathLike[str]:
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise ValueError(f"{key} must be a file path, got {value!r}.")
    return value


# -- the state of one application ---------------------------------------------------------------


class ModelKitState:
    """The models of one Flask application, kept in ``app.extensions["modelkit"]``.

    The registry is loaded by :meth:`ModelKit.init_app`, or on first use with
    ``MODELKIT_LAZY = True``, and closed when the interpreter exits (or by :meth:`close`).

    Args:
        app_name: the application's name, for messages.
        build: loads the registry.
        is_lazy: whether the registry waits for its first use.
        max_batch_size: the most records (or tensor rows) one predict request may hold.
        max_body_size: the largest predict request body, in bytes.
        max_response_size: the largest predict answer, in bytes.
    """

    def __init__(
        self,
        app_name: str,
        build: Callable[[], Registry],
        *,
        is_lazy: bool = False,
        max_batch_size: int | None = DEFAULT_MAX_BATCH_SIZE,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        max_response_size: int | None = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        self.app_name = app_name
        self.is_lazy = is_lazy
        self.max_batch_size = max_batch_size
        self.max_body_size = max_body_size
        self.max_response_size = max_response_size
        self._build = build
        self._registry: Registry | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._is_closed = False
        self._loading = threading.Lock()

    @property
    def registry(self) -> Registry:
        """The application's registry, loaded now if it is not yet (once, whatever the number
        of threads asking).

        Raises:
            RuntimeError: the state was closed.
        """
        registry = self._registry
        if registry is not None:
            return registry
        with self._loading:
            if self._registry is None:
                if self._is_closed:
                    raise RuntimeError(f"The models of Flask app {self.app_name!r} are closed.")
                started = time.perf_counter()
                registry = self._build()
                # Closed at exit, or with the state, whichever comes first.
                self._finalizer = weakref.finalize(self, registry.close)
                self._registry = registry
                logger.info(
                    "modelkit: loaded %d model(s) for Flask app %r in %.0f ms (pid %d)",
                    len(registry),
                    self.app_name,
                    1000 * (time.perf_counter() - started),
                    os.getpid(),
                )
            return self._registry

    @property
    def is_loaded(self) -> bool:
        """Whether the registry has been loaded."""
        return self._registry is not None

    def close(self) -> None:
        """Stop the registry's background work (shadow and micro-batching workers).

        For tests and shutdown hooks; the registry is closed at interpreter exit anyway. The
        models cannot be used afterwards.
        """
        with self._loading:
            self._is_closed = True
            self._registry = None
            finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()

    def __repr__(self) -> str:
        if self._is_closed:
            status = "closed"
        elif self._registry is not None:
            status = f"models={self._registry.names()}"
        else:
            status = "not loaded"
        return f"<ModelKitState {self.app_name!r} {status}>"


def _state_of(app: flask.Flask) -> ModelKitState:
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, ModelKitState):
        raise RuntimeError(
            f"ModelKit is not initialised on Flask app {app.name!r}: call "
            "ModelKit(app), or kit.init_app(app) in the application factory."
        )
    return state


def _current_registry() -> Registry:
    if not flask.has_app_context():
        raise RuntimeError(
            "modelkit.flask.models was used outside of a Flask application context. Use it in "
            "a view, or inside `with app.app_context():`."
        )
    return _state_of(flask.current_app).registry


#: The current application's :class:`modelkit.Registry`: ``models["churn"].predict(record)``
#: in a view, or anywhere inside an application context.
models: Registry = LocalProxy(_current_registry)  # type: ignore[assignment]


# -- the extension ------------------------------------------------------------------------------


class ModelKit:
    """The Flask extension: a registry of models for each application it is initialised on.

    It keeps no application of its own, so one instance serves any number of applications
    (the application-factory pattern); each gets its own registry, from its own config.

    Args:
        app: initialise this application now (or call :meth:`init_app` later).
        url_prefix: serve the JSON endpoints under this path (``"/models"``): the model list,
            each model's description, and ``{prefix}/<name>/predict``. ``None`` for none.
        oip: also serve the Open Inference Protocol v2 under ``/v2`` (``GET /v2/models/<name>``,
            ``POST /v2/models/<name>/infer``...), with the same limits.
        openapi_url: serve the OpenAPI 3.1 document of the JSON endpoints (and, with ``oip``,
            of the ``/v2`` endpoints) at this path (``"/openapi.json"``), written from the
            models' signatures. ``None`` (the default) for none, so that it never takes a URL
            the application uses.
        report: also serve each model's report page at ``{prefix}/<name>/report`` (HTML:
            identity, signature, reference cases, training profile and live drift; the charts
            need the ``report`` extra). Off by default: it shows the training data's
            distributions, which not every application may publish.

    Raises:
        ValueError: ``url_prefix`` does not start with ``/``, or is ``/v2`` or under it with
            ``oip``; ``openapi_url`` does not start with ``/``, or is given without
            ``url_prefix``; ``report`` is given without ``url_prefix``.
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        url_prefix: str | None = None,
        oip: bool = False,
        openapi_url: str | None = None,
        report: bool = False,
    ) -> None:
        if url_prefix is not None and not url_prefix.startswith("/"):
            raise ValueError(f"url_prefix must start with '/', got {url_prefix!r}.")
        if (
            oip
            and url_prefix is not None
            and (url_prefix.rstrip("/") == "/v2" or url_prefix.startswith("/v2/"))
        ):
            raise ValueError(
                f"url_prefix {url_prefix!r} is the Open Inference Protocol's (/v2 and under); "
                "choose another."
            )
        if openapi_url is not None:
            if not openapi_url.startswith("/"):
                raise ValueError(f"openapi_url must start with '/', got {openapi_url!r}.")
            if url_prefix is None:
                raise ValueError("openapi_url documents the JSON endpoints: give url_prefix too.")
        if report and url_prefix is None:
            raise ValueError("report serves a page under the JSON endpoints: give url_prefix too.")
        self.url_prefix = url_prefix
        self.oip = oip
        self.openapi_url = openapi_url
        self.report = report
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Read ``app``'s ``MODELKIT_*`` config, load its models (unless ``MODELKIT_LAZY``),
        and register the endpoints.

        Each model is loaded as a :class:`modelkit.Registry` loads it: its reference cases
        checked, then run through its call path to warm it up (unless its table says
        ``"warmup": False``), before any request reaches it.

        Relative paths in ``MODELKIT_MODELS``, ``MODELKIT_CONFIG`` and ``MODELKIT_LOCK`` are
        relative to ``app.root_path``; those inside the config file, to the file.

        Raises:
            ValueError: a malformed setting or model entry (the message names the key).
            BundleError: a bundle, the config or the lock file is missing or malformed.
            IntegrityError: a bundle does not have the digest the lock file pins.
            RuntimeError: ModelKit is already initialised on ``app``.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"ModelKit is already initialised on Flask app {app.name!r}.")
        plan = _plan(app.config, Path(app.root_path))
        state = ModelKitState(
            app.name,
            plan.build,
            is_lazy=plan.is_lazy,
            max_batch_size=plan.max_batch_size,
            max_body_size=plan.max_body_size,
            max_response_size=plan.max_response_size,
        )
        if not plan.is_lazy:
            # Now, so that gunicorn --preload loads the models once, before it forks.
            state.registry  # noqa: B018 - the property loads the registry
        app.extensions[EXTENSION_KEY] = state
        app.url_map.converters.setdefault(_ANY_PATH, _AnyPath)
        if self.url_prefix is not None:
            prefix = self.url_prefix.rstrip("/")
            app.register_blueprint(
                _endpoints(
                    state,
                    prefix,
                    self.openapi_url,
                    has_open_inference=self.oip,
                    has_report=self.report,
                )
            )
        if self.oip:
            app.register_blueprint(_open_inference(state))


# -- the endpoints ------------------------------------------------------------------------------

_ANY_PATH = "modelkit_path"


class _AnyPath(PathConverter):
    """Werkzeug's ``path``, newlines included: its ``.*?`` stops at one, and the URL would get
    Flask's HTML 404 instead of the endpoints' JSON answer."""

    regex = r"[^/][\s\S]*?"


def _service(state: ModelKitState, url_for: Callable[[str], str] | None = None) -> Service:
    return Service(
        lambda: state.registry,
        max_batch_size=state.max_batch_size,
        max_body_size=state.max_body_size,
        max_response_size=state.max_response_size,
        url_for=url_for,
    )


def _read_body(service: Service) -> bytes | Reply:
    # Refused from Content-Length before a byte is read, and read no further than the limit
    # (chunked bodies); the stream raises RequestEntityTooLarge past MAX_CONTENT_LENGTH.
    request = flask.request
    try:
        return service.read_body(request.stream.read, request.content_length)
    except HTTPException as exc:
        return _http_error(exc)


def _open_inference(state: ModelKitState) -> flask.Blueprint:
    """The Open Inference Protocol under ``/v2``, as a blueprint named ``modelkit_oip``."""
    blueprint = flask.Blueprint("modelkit_oip", __name__)
    service = _service(state)
    # Ready once the registry is loaded, its models checked and warmed up: a lazy one loads
    # on the first probe, which waits for it. A load that fails raises here: not ready (400),
    # and the model URLs answer 500.
    oip = OpenInference(service, is_ready=lambda: state.registry is not None)

    def view(path: str = "") -> flask.Response:
        request = flask.request
        reply = oip.handle(
            request.method, request.path, request.headers.get, lambda: _read_body(service)
        )
        return _respond(reply)

    # "/v2/" too, which the path converter does not match (an empty path): the protocol's
    # server metadata, as on the other servers.
    for rule in ("/v2", "/v2/", f"/v2/<{_ANY_PATH}:path>"):
        blueprint.add_url_rule(rule, "v2", view, methods=ANY_METHOD)
    return blueprint


def _endpoints(
    state: ModelKitState,
    prefix: str,
    openapi_url: str | None,
    *,
    has_open_inference: bool,
    has_report: bool,
) -> flask.Blueprint:
    """The JSON endpoints under ``prefix`` (and their OpenAPI document at ``openapi_url``, with
    the ``/v2`` endpoints when ``has_open_inference``; the report pages when ``has_report``),
    as a blueprint named ``modelkit``."""
    blueprint = flask.Blueprint("modelkit", __name__)
    request = flask.request
    service = _service(state, lambda name: flask.url_for("modelkit.describe", name=name))

    def predict(name: str) -> Reply:
        body = _read_body(service)
        if isinstance(body, Reply):
            return body
        return service.predict(name, body, key=request.headers.get(ROUTING_KEY_HEADER))

    def not_found(path: str) -> Reply:
        return no_endpoint(request.path, prefix or "/", f"{prefix}/")

    def openapi() -> Reply:
        document = openapi_document(
            state.registry,
            prefix=prefix,
            max_batch_size=state.max_batch_size,
            max_body_size=state.max_body_size,
            has_open_inference=has_open_inference,
            has_report=has_report,
        )
        if request.script_root:  # the app is mounted under a path: the document's URLs are too
            document["servers"] = [{"url": request.script_root}]
        return Reply(200, document)

    index = _view(service.index, READ_METHODS)
    routes: list[tuple[str, str, Callable[..., Any]]] = [
        ("index", prefix or "/", index),
        ("describe", f"{prefix}/<name>", _view(service.describe, READ_METHODS)),
        ("predict", f"{prefix}/<name>/predict", _view(predict, ("POST",))),
        *(
            [("report", f"{prefix}/<name>/report", _view(service.report, READ_METHODS))]
            if has_report
            else []
        ),
        ("not_found", f"{prefix}/<{_ANY_PATH}:path>", _view(not_found, ANY_METHOD)),
    ]
    if prefix:
        routes.append(("index", f"{prefix}/", index))
    if openapi_url is not None:
        routes.append(("openapi", openapi_url, _view(openapi, READ_METHODS)))
    # Every URL accepts every method, so that a wrong one gets the JSON 405 (with ``Allow``)
    # rather than Flask's HTML page, which routing would raise before any view runs.
    for endpoint, rule, view in routes:
        blueprint.add_url_rule(rule, endpoint, view, methods=ANY_METHOD)
    return blueprint


def _view(handle: Callable[..., Reply], allowed: tuple[str, ...]) -> Callable[..., Any]:
    """A Flask view around ``handle``: the method check, and every failure as a JSON reply."""
    allow = allow_header(allowed)

    @functools.wraps(handle)
    def view(**arguments: Any) -> flask.Response:
        method = flask.request.method
        refused = refused_method(flask.request.path, method, allowed)
        if refused is not None:
            return _respond(refused, {"Allow": allow})
        try:
            reply = handle(**arguments)
        except HTTPException as exc:
            reply = _http_error(exc)
        except Exception:  # an endpoint answers in JSON whatever happens
            # The details stay in the server's log, never in the response.
            logger.exception("modelkit: %s %s failed", method, flask.request.path)
            reply = error(500, "internal_error", "The request failed; see the server log.")
        return _respond(reply)

    return view


def _respond(reply: Reply, headers: Mapping[str, str] | None = None) -> flask.Response:
    merged = {**dict(reply.headers), **(headers or {})}
    if not reply.has_body:
        return flask.current_app.response_class(status=reply.status, headers=merged)
    return flask.current_app.response_class(
        reply.to_bytes(), status=reply.status, headers=merged, content_type=reply.content_type
    )


def _http_error(exc: HTTPException) -> Reply:
    """One of Flask's own errors (raised while reading the request) in the JSON error shape."""
    status = exc.code or 500
    if status == 413:
        limit = flask.request.max_content_length
        return error(
            413,
            "request_too_large",
            "The request body is larger than the "
            + (f"{limit} bytes " if limit is not None else "size ")
            + "this server accepts (MAX_CONTENT_LENGTH); send fewer records per request.",
        )
    kind = "_".join((exc.name or "error").lower().split())
    return error(status, kind, exc.description or exc.name or "The request failed.")
