"""One-record inference over HTTP, against the same model called in-process.

The model is a logistic regression on scikit-learn's iris table, saved with ``modelkit.save``
(the default format) in a temporary directory. The surfaces:

- in-process: ``model.predict(record)`` from the client threads, no HTTP at all;
- ``modelkit serve`` (waitress, in a child process): ``POST /models/iris/predict`` with a JSON
  record; ``POST /v2/models/iris/infer`` with an Open Inference Protocol JSON body; the same
  request with the binary tensor data extension, as tritonclient sends it by default;
- the FastAPI router on uvicorn (in a child process): ``POST /models/iris/predict``;
- with ``--mlserver PATH`` (the ``mlserver`` command of a virtual environment of its own, as its
  pins differ from this project's: ``pip install mlserver mlserver-sklearn``), MLServer serving
  the same pickle from inside the bundle, asked the same Open Inference Protocol request (one
  input per column, as a pandas frame) for its ``predict`` and ``predict_proba`` outputs.

A bounded load generator on 127.0.0.1: ``--threads`` client threads (4 by default), each with
its own keep-alive connection, each sending ``calls`` requests per round. Rounds go round-robin
over the surfaces, so that noise from other processes lands on all of them. For each surface
the table gives the median throughput of its rounds, the 50th and 99th percentile latency of all
its requests, and its throughput as a fraction of the in-process calls'. Servers and clients
share the machine's cores, as they would on one host. Nothing is asserted: this is a report,
and the exit status is 0 whatever it says.

Run it with ``python benchmarks/bench_serving.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _report import print_environment, print_load_average, print_table, quick_parser

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
RECORD_POOL = 64


@dataclass(frozen=True)
class Plan:
    """How many rounds each surface gets, and how many requests one client thread sends in one."""

    rounds: int
    calls: int
    warmup_calls: int


FULL = Plan(rounds=15, calls=200, warmup_calls=100)
QUICK = Plan(rounds=4, calls=60, warmup_calls=30)


@dataclass
class Surface:
    """One way of calling the model: a name and a factory of per-thread callers."""

    name: str
    caller: Callable[[], tuple[Callable[[int], Any], Callable[[], None]]]
    throughputs: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def records() -> list[dict[str, float]]:
    rng = np.random.default_rng(0)
    low = np.array([4.3, 2.0, 1.0, 0.1])
    high = np.array([7.9, 4.4, 6.9, 2.5])
    values = np.round(rng.uniform(low, high, size=(RECORD_POOL, 4)), 1)
    return [dict(zip(FEATURES, map(float, row), strict=True)) for row in values]


# -- request bodies ---------------------------------------------------------------------------


def json_bodies(pool: list[dict[str, float]]) -> list[bytes]:
    return [json.dumps(record).encode() for record in pool]


def oip_json_bodies(pool: list[dict[str, float]]) -> list[bytes]:
    """Open Inference Protocol JSON: one ``[1]`` FP64 input per column."""
    return [
        json.dumps(
            {
                "inputs": [
                    {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
                    for name, value in record.items()
                ]
            }
        ).encode()
        for record in pool
    ]


def oip_binary_bodies(pool: list[dict[str, float]]) -> list[tuple[bytes, int]]:
    """The same requests as tritonclient writes them by default: binary inputs and outputs."""
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    bodies = []
    for record in pool:
        inputs = []
        for name, value in record.items():
            tensor = InferInput(name, [1], "FP64")
            tensor.set_data_from_numpy(np.array([value]), binary_data=True)
            inputs.append(tensor)
        outputs = [InferRequestedOutput(n, binary_data=True) for n in ("label", "probabilities")]
        body, header_length = InferenceServerClient.generate_request_body(inputs, outputs=outputs)
        bodies.append((body, header_length or 0))
    return bodies


# -- callers ----------------------------------------------------------------------------------


def http_caller(
    port: int, path: str, bodies: Sequence[bytes | tuple[bytes, int]]
) -> Callable[[], tuple[Callable[[int], Any], Callable[[], None]]]:
    """Per thread: POST the ``index``-th body (cycled) to ``path`` on one keep-alive connection."""

    def make() -> tuple[Callable[[int], Any], Callable[[], None]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def call(index: int) -> Any:
            body = bodies[index % len(bodies)]
            headers = {"Content-Type": "application/json"}
            if isinstance(body, tuple):
                body, header_length = body
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(header_length),
                }
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # The server closed the idle connection between rounds: open it again.
                connection.close()
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}: {data[:300]!r}")
            return data

        return call, connection.close

    return make


def in_process_caller(model: Any) -> Callable[[], tuple[Callable[[int], Any], Callable[[], None]]]:
    pool = records()

    def make() -> tuple[Callable[[int], Any], Callable[[], None]]:
        return (lambda index: model.predict(pool[index % len(pool)])), (lambda: None)

    return make


# -- servers ----------------------------------------------------------------------------------


def _wait_listening(process: subprocess.Popen[str], log: Any, pattern: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log.seek(0)
        match = re.search(pattern, log.read())
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server exited with {process.returncode}: {log.read()}")
        time.sleep(0.05)
    raise RuntimeError("the server did not start")


def _wait_ready(port: int, path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.05)
    raise RuntimeError(f"{path} never answered 200")


@contextmanager
def child(argv: list[str], pattern: str, ready: str) -> Iterator[int]:
    """A server in a child process; yields its port once ``ready`` answers 200."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, text=True, cwd=ROOT)
        try:
            port = _wait_listening(process, log, pattern)
            _wait_ready(port, ready)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def save_model(directory: Path) -> Path:
    """The logistic regression, fitted on the iris table and saved as a bundle."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import modelkit

    frame, target = load_iris(return_X_y=True, as_frame=True)
    frame.columns = list(FEATURES)
    path = directory / "iris"
    model = LogisticRegression(max_iter=1000).fit(frame, target)
    modelkit.save(model, path, name="iris", version="1", sample_input=frame)
    return path


def modelkit_serve(bundle: Path, threads: int) -> Any:
    argv = [sys.executable, "-m", "modelkit", "serve", str(bundle), "--port", "0"]
    argv += ["--threads", str(threads)]
    return child(argv, r"Serving on http://127\.0\.0\.1:(\d+)", "/readyz")


FASTAPI_APP = """
import sys
import uvicorn
from fastapi import FastAPI
from modelkit.fastapi import router

app = FastAPI()
app.include_router(router({"models": {"iris": sys.argv[1]}}))
uvicorn.run(app, host="127.0.0.1", port=0, log_level="info", timeout_keep_alive=120)
"""


def fastapi_uvicorn(bundle: Path) -> Any:
    argv = [sys.executable, "-c", FASTAPI_APP, str(bundle)]
    return child(argv, r"Uvicorn running on http://127\.0\.0\.1:(\d+)", "/models")


def mlserver(command: str, bundle: Path, directory: Path) -> Any:
    """MLServer's scikit-learn runtime on the pickle inside the bundle, one process, no workers."""
    import socket

    ports = []
    for _ in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    root = directory / "mlserver"
    (root / "iris").mkdir(parents=True)
    (root / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": ports[0],
                "grpc_port": ports[1],
                "metrics_port": ports[2],
                "parallel_workers": 0,
            }
        )
    )
    artifact = next((bundle / "artifacts").iterdir())
    (root / "iris" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str(artifact)},
            }
        )
    )
    argv = [command, "start", str(root)]
    return child(argv, rf"Uvicorn running on http://127\.0\.0\.1:({ports[0]})", "/v2/health/ready")


def mlserver_bodies(pool: list[dict[str, float]]) -> list[bytes]:
    """The OIP JSON bodies, as a pandas frame, asking for labels and probabilities."""
    bodies = []
    for body in oip_json_bodies(pool):
        document = json.loads(body)
        document["parameters"] = {"content_type": "pd"}
        document["outputs"] = [{"name": "predict"}, {"name": "predict_proba"}]
        bodies.append(json.dumps(document).encode())
    return bodies


# -- measuring --------------------------------------------------------------------------------


def one_round(surface: Surface, callers: list[Any], calls: int, *, record: bool) -> None:
    """Every client thread sends ``calls`` requests at once; the round's throughput is kept."""
    barrier = threading.Barrier(len(callers) + 1)
    latencies: list[list[float]] = [[] for _ in callers]
    failures: list[BaseException] = []

    def work(position: int) -> None:
        call = callers[position][0]
        barrier.wait()
        mine = latencies[position]
        try:
            for index in range(position, position + calls):
                started = time.perf_counter_ns()
                call(index)
                mine.append(time.perf_counter_ns() - started)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(callers))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    if record:
        surface.throughputs.append(len(callers) * calls / elapsed)
        surface.latencies.extend(value for mine in latencies for value in mine)


def measure(surfaces: list[Surface], plan: Plan, threads: int) -> None:
    with ExitStack() as stack:
        callers = {}
        for surface in surfaces:
            made = [surface.caller() for _ in range(threads)]
            for _, close in made:
                stack.callback(close)
            callers[surface.name] = made
            one_round(surface, made, plan.warmup_calls, record=False)
        for round_number in range(plan.rounds):
            order = surfaces if round_number % 2 == 0 else surfaces[::-1]
            for surface in order:
                one_round(surface, callers[surface.name], plan.calls, record=True)


def report(surfaces: list[Surface]) -> None:
    baseline = statistics.median(surfaces[0].throughputs)
    rows = [("surface", "requests/s", "p50", "p99", "vs in-process")]
    for surface in surfaces:
        throughput = statistics.median(surface.throughputs)
        p50, p99 = np.percentile(surface.latencies, [50, 99]) / 1e3
        rows.append(
            (
                surface.name,
                f"{throughput:,.0f}",
                f"{p50:,.0f} us",
                f"{p99:,.0f} us",
                f"{throughput / baseline:.3f}x",
            )
        )
    print_table(rows, left={0})


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "a smoke run, about four times shorter")
    parser.add_argument("--threads", type=int, default=4, help="client threads (4)")
    parser.add_argument("--mlserver", metavar="PATH", help="an mlserver command, for its row")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    packages = ["modelkit", "scikit-learn", "waitress", "fastapi", "uvicorn"]
    print_environment(packages, "quick" if args.quick else "full")
    print(f"  clients       {args.threads} threads x {plan.calls} requests, {plan.rounds} rounds")
    print()

    import modelkit

    pool = records()
    with tempfile.TemporaryDirectory() as temporary, ExitStack() as servers:
        directory = Path(temporary)
        bundle = save_model(directory)
        model = modelkit.load(bundle)
        serve_port = servers.enter_context(modelkit_serve(bundle, args.threads))
        fastapi_port = servers.enter_context(fastapi_uvicorn(bundle))
        predict, infer = "/models/iris/predict", "/v2/models/iris/infer"
        surfaces = [
            Surface("in-process predict(record)", in_process_caller(model)),
            Surface("serve, JSON endpoint", http_caller(serve_port, predict, json_bodies(pool))),
            Surface("serve, OIP JSON", http_caller(serve_port, infer, oip_json_bodies(pool))),
            Surface("serve, OIP binary", http_caller(serve_port, infer, oip_binary_bodies(pool))),
            Surface(
                "FastAPI, JSON endpoint", http_caller(fastapi_port, predict, json_bodies(pool))
            ),
            Surface("FastAPI, OIP JSON", http_caller(fastapi_port, infer, oip_json_bodies(pool))),
        ]
        if args.mlserver:
            port = servers.enter_context(mlserver(args.mlserver, bundle, directory))
            surfaces.append(
                Surface("MLServer, OIP JSON", http_caller(port, infer, mlserver_bodies(pool)))
            )
        measure(surfaces, plan, args.threads)
    report(surfaces)
    print()
    print("Medians of round-robin rounds; latencies over every request of a surface.")
    print_load_average()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
