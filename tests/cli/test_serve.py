"""``modelkit serve`` refuses what it can before it opens a port (the real server of the JSON
endpoints is in ``tests/test_cli.py``), and speaks the Open Inference Protocol to a real client."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from modelkit.cli import main


@pytest.fixture
def config(tmp_path: Path, iris_bundle: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(f'[models]\niris = "{iris_bundle.as_posix()}"\n', encoding="utf-8")
    return path


def test_a_missing_lock_file_fails_before_the_port_opens(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(config), "--lock", str(tmp_path / "missing.lock")]) == 1
    err = capsys.readouterr().err
    assert "Serving on" not in err
    assert err.startswith("modelkit: error: The lock file ")
    assert "does not exist" in err


def test_a_malformed_config_fails_before_the_port_opens(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text('[models.iris]\npath = "bundles/iris"\nwieght = 0.5\n', encoding="utf-8")
    assert main(["serve", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Serving on" not in err
    assert "models.iris.wieght: unknown key" in err


# -- the Open Inference Protocol on a real port ---------------------------------------------------


@pytest.mark.integration
def test_serve_speaks_the_open_inference_protocol_to_tritonclient(tmp_path: Path) -> None:
    from tests.oip_clients import exercise

    bundle = Path(__file__).resolve().parents[2] / "examples" / "flask_app" / "bundles" / "iris"
    with (tmp_path / "serve.log").open("w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelkit", "serve", str(bundle), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        try:
            port = _listening(process, log)
            _ready(port)
            exercise(port)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0


def test_the_url_prefix_cannot_take_the_protocols_place(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(config), "--url-prefix", "/v2"]) == 2
    assert "/v2 is the Open Inference Protocol's" in capsys.readouterr().err


def _listening(process: subprocess.Popen[str], log: IO[str]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log.seek(0)
        match = re.search(r"Serving on http://127\.0\.0\.1:(\d+)", log.read())
        if match:
            return int(match.group(1))
        assert process.poll() is None, log.read()
        time.sleep(0.05)
    pytest.fail("modelkit serve did not start")


def _ready(port: int) -> None:
    """Wait for /v2/health/ready: 400 (not ready, no body) while the models load, then 200."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/v2/health/ready")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status == 200:
            return
        assert (response.status, body) == (400, b"")
        time.sleep(0.05)
    pytest.fail("the models never became ready")
