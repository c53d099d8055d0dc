"""The Flask JSON endpoint against a plain Flask view that calls ``model.predict`` itself.

One Flask application serves both sides, on one waitress server on 127.0.0.1, from the same
loaded model (the ONNX iris bundle shipped in ``examples/flask_app``):

- raw: ``POST /plain`` -> ``model.predict(request.get_json())``, answered with ``jsonify``;
- modelkit: ``POST /models/iris/predict``, the endpoint ``ModelKit(url_prefix="/models")`` serves
  (parsing, routing, validation errors as JSON, the batch limit).

Each side calls over its own keep-alive HTTP connection, so a round measures the whole request
path (client, socket, server, Flask, model) as a client sees it. Raw and modelkit rounds
alternate (and swap order every round), so machine noise lands on both; the table reports the
median of each side, their ratio and the target. A second row does the same for a batch of
records (``{"instances": [...]}``, against a view calling ``predict_batch``).
Nothing is asserted: this is a report, and the exit status is 0 whatever it says.

Run it with ``python benchmarks/bench_flask.py`` (``--quick`` for a smoke run, ~4x shorter).
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import (
    Result,
    Target,
    compare,
    print_environment,
    print_load_average,
    print_results,
    quick_parser,
)

BUNDLE = Path(__file__).resolve().parents[1] / "examples" / "flask_app" / "bundles" / "iris"
TARGET = Target(max_ratio=1.2)
BATCH_SIZE = 100
# Records are cycled from a small pool so that each call gets different values, as in a service.
RECORD_POOL = 64


@dataclass(frozen=True)
class Plan:
    """How many rounds each measurement takes, and how many requests one round sends."""

    rounds: int
    calls: int
    batch_rounds: int
    batch_calls: int
    warmup_calls: int


FULL = Plan(rounds=31, calls=300, batch_rounds=21, batch_calls=40, warmup_calls=200)
QUICK = Plan(rounds=8, calls=200, batch_rounds=6, batch_calls=20, warmup_calls=50)


def print_setup(plan: Plan, *, quick: bool) -> None:

    versions = [
        "flask",
        "werkzeug",
        "waitress",
        "onnxruntime",
        "modelkit",
    ]
    print_environment(
        versions,
        f"{'quick' if quick else 'full'}: {plan.rounds} rounds of {plan.calls} single-record "
        f"requests; {plan.batch_rounds} rounds of {plan.batch_calls} requests of "
        f"{BATCH_SIZE} records; one waitress server (4 threads), one keep-alive connection "
        "per side",
    )


# -- the application and the server ------------------------------------------------------------


def build_app() -> Any:
    """One Flask app with both sides, on the same loaded model."""
    from flask import Flask, jsonify, request

    from modelkit.flask import ModelKit

    app = Flask(__name__)
    app.config["MODELKIT_MODELS"] = {"iris": {"path": str(BUNDLE), "version_policy": "ignore"}}
    ModelKit(app, url_prefix="/models")
    model = app.extensions["modelkit"].registry["iris"].model

    # What one writes by hand: the model, called from a view.
    @app.post("/plain")
    def plain() -> Any:
        return jsonify(model.predict(request.get_json()).to_dict())

    @app.post("/plain/batch")
    def plain_batch() -> Any:
        predictions = model.predict_batch(request.get_json()["instances"])
        return jsonify({"predictions": [p.to_dict() for p in predictions]})

    return app


class Server:
    """waitress on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app: Any) -> None:
        import waitress

        self._server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server = self._server

        def close_everything() -> None:  # on the server's loop thread, which then returns
            for dispatcher in list(server._map.values()):
                dispatcher.close()

        server.trigger.pull_trigger(close_everything)
        self._thread.join(10)
        server.task_dispatcher.shutdown()


def client(port: int, path: str) -> tuple[Callable[[bytes], Any], Callable[[], None]]:
    """A function that POSTs a JSON body to ``path`` on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}

    def post(body: bytes) -> Any:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {data[:200]!r}")
        return data

    return post, connection.close


def records(count: int) -> list[dict[str, float]]:
    rng = random.Random(0)
    ranges = {
        "sepal_length": (4.3, 7.9),
        "sepal_width": (2.0, 4.4),
        "petal_length": (1.0, 6.9),
        "petal_width": (0.1, 2.5),
    }
    return [
        {name: round(rng.uniform(low, high), 1) for name, (low, high) in ranges.items()}
        for _ in range(count)
    ]


def check_agreement(raw: Callable[[bytes], Any], wrapped: Callable[[bytes], Any]) -> None:
    """Say whether both sides answer the same (a sanity check only)."""
    same = all(
        json.loads(raw(body)) == json.loads(wrapped(body))
        for body in (json.dumps(record).encode() for record in records(16))
    )
    print(
        f"the plain view and the modelkit endpoint agree on 16 records: {'yes' if same else 'NO'}"
    )


# -- the benchmarks ---------------------------------------------------------------------------


def run(plan: Plan) -> list[Result]:
    app = build_app()
    server = Server(app)
    connections = []
    try:
        raw, close = client(server.port, "/plain")
        connections.append(close)
        wrapped, close = client(server.port, "/models/iris/predict")
        connections.append(close)
        check_agreement(raw, wrapped)
        print()

        pool = [json.dumps(record).encode() for record in records(RECORD_POOL)]
        bodies = [pool[i % RECORD_POOL] for i in range(plan.calls)]
        print("measuring single-record requests...", flush=True)
        results = [
            compare(
                "POST one record (JSON over HTTP)",
                raw,
                wrapped,
                bodies,
                rounds=plan.rounds,
                warmup=bodies[: plan.warmup_calls],
                target=TARGET,
            )
        ]

        raw_batch, close = client(server.port, "/plain/batch")
        connections.append(close)
        everything = records(RECORD_POOL * 4)
        batches = [
            json.dumps(
                {"instances": [everything[(i + j) % len(everything)] for j in range(BATCH_SIZE)]}
            ).encode()
            for i in range(plan.batch_calls)
        ]
        print(f"measuring {BATCH_SIZE}-record batch requests...", flush=True)
        results.append(
            compare(
                f"POST {BATCH_SIZE} records (JSON over HTTP)",
                raw_batch,
                wrapped,
                batches,
                rounds=plan.batch_rounds,
                warmup=batches[:5],
                target=TARGET,
            )
        )
        print()
        return results
    finally:
        for close in connections:
            close()
        server.stop()
        app.extensions["modelkit"].close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "about 4x fewer rounds, for a smoke run")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    print_setup(plan, quick=args.quick)
    results = run(plan)
    print_results(
        results,
        per="request",
        sides="raw: a plain Flask view calling model.predict; modelkit: the ModelKit endpoint.",
    )
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
