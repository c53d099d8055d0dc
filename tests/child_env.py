"""Child processes and virtual environments for the integration tests that need a Python of
their own: a wheel installed from scratch, or an older library next to this checkout."""

from __future__ import annotations

import os
import site
import subprocess
import venv
from pathlib import Path


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its stdout, or a failed assertion with both streams."""
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def seeing_this_environment(directory: Path) -> Path:
    """A new virtual environment in ``directory`` that also sees this environment's packages
    (modelkit and its dependencies, so nothing is downloaded that a test does not install
    there itself, and what it installs comes first); its Python."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(directory)
    python = directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=directory
    ).strip()
    # An `import` line in a .pth file runs at start-up: addsitedir also reads the .pth files
    # of this environment (the editable install of modelkit among them).
    lines = [f"import site; site.addsitedir({p!r})" for p in site.getsitepackages()]
    Path(purelib, "parent_environment.pth").write_text("\n".join(lines) + "\n")
    return python
