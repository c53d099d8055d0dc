"""``modelkit serve`` refuses what it can before it opens a port (the real server is in
``tests/test_cli.py``)."""

from __future__ import annotations

from pathlib import Path

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
