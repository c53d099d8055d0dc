"""Graphs that attack an HTTP endpoint, built with onnx.helper and saved as real bundles.

- ``zeros``: ``ConstantOfShape``: a request of a few bytes (``{"shape": [60000000]}``) asks for an
  answer of hundreds of megabytes.
- ``rows``: ``Identity`` over float32[N, 2]: one record holds as many rows as its array has.
- ``reshape``: a ``Reshape`` to a fixed [2, 3], which onnxruntime refuses for any other input
  size, with its C++ source path and function signature in the message.

And the helpers that speak to a server: ``uvicorn_server`` runs an ASGI application on a real
port, the ``post_*`` and ``request_json`` functions send it requests.

A plain module, not a conftest: the tests import what they use.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import modelkit


def _save(graph: Any, path: Path, name: str) -> Path:
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    modelkit.save(model, path, name=name, version="1.0.0")
    return path


def save_zeros(path: Path) -> Path:
    """``zeros``: int64 ``shape`` [1] -> float32 ``zeros`` of that shape."""
    from onnx import TensorProto, helper

    value = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["zeros"], value=value)],
        "zeros",
        [helper.make_tensor_value_info("shape", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("zeros", TensorProto.FLOAT, [None])],
    )
    return _save(graph, path, "zeros")


def save_rows(path: Path) -> Path:
    """``rows``: float32 ``x`` [N, 2] -> ``y``, the same."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    return _save(graph, path, "rows")


def save_reshape(path: Path) -> Path:
    """``reshape``: float32 ``x`` [n] -> ``y`` [2, 3]; refused by onnxruntime unless n is 6."""
    from onnx import TensorProto, helper

    target = helper.make_tensor("target", TensorProto.INT64, [2], [2, 3])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "target"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[target],
    )
    return _save(graph, path, "reshape")


def save_all(root: Path) -> dict[str, Path]:
    """Every graph above, as bundles under ``root``, by model name."""
    return {
        "zeros": save_zeros(root / "zeros"),
        "rows": save_rows(root / "rows"),
        "reshape": save_reshape(root / "reshape"),
    }


#: What onnxruntime's messages carry that an error body must not.
RUNTIME_INTERNALS = ("onnxruntime_src", "onnxruntime::", ".cc:", ".h:", "Traceback")


@contextlib.contextmanager
def uvicorn_server(app: Any, *, lifespan: str) -> Iterator[int]:
    """``app`` on uvicorn, on a free port of 127.0.0.1, until the block ends; yields the port.

    ``lifespan`` is uvicorn's setting (``"on"`` runs the app's start-up and shutdown). The
    server's thread has stopped when the block is left.
    """
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan=lifespan, ws="none", http="h11", loop="asyncio", log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


def post_chunked(
    port: int, path: str, chunks: Iterable[bytes], *, timeout: float = 60
) -> tuple[int, Any]:
    """POST a body with ``Transfer-Encoding: chunked`` (no ``Content-Length``); the status and
    the decoded JSON answer. A server that answers before the body ends may close the
    connection while it is still being sent: the answer is read all the same."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        try:
            for chunk in chunks:
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-body: the answer was sent before the connection closed
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post_declared(port: int, path: str, length: int, *, timeout: float = 60) -> tuple[int, Any]:
    """Declare a body of ``length`` bytes and send none of it: only a server that decides from
    ``Content-Length`` answers (the others wait for the body until the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        try:
            return response.status, json.loads(response.read())
        finally:
            response.close()


def request_json(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 60,
) -> tuple[int, Any]:
    """One JSON request on its own connection: the status and the decoded answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(
            method,
            path,
            body=payload,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()
