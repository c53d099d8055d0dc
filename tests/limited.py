"""Run an attack in a child process under a memory and time limit.

A denial-of-service regression must fail a test, not take the machine down: the child gets an
address-space limit (``RLIMIT_AS``) and a wall-clock timeout, and the test reads how it ended.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
# Enough for Python, numpy, scikit-learn and onnxruntime to import, far below what the attacks
# would take if a limit were missing.
DEFAULT_MEMORY = 1536 * 2**20
DEFAULT_TIMEOUT = 120.0

_PRELUDE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
def report(**fields):
    print("\\n@@result@@" + json.dumps(fields), flush=True)
def peak():
    # VmHWM, this process's own peak: ru_maxrss keeps the forking parent's across exec.
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
"""


@dataclass(frozen=True)
class Outcome:
    """How the child ended: its return code, what it reported, and its output."""

    returncode: int
    result: dict[str, object] | None
    stdout: str
    stderr: str

    @property
    def ran_out_of_memory(self) -> bool:
        return self.returncode != 0 and "MemoryError" in self.stderr


def run_limited(
    code: str,
    *,
    memory: int = DEFAULT_MEMORY,
    timeout: float = DEFAULT_TIMEOUT,
    cwd: Path | None = None,
) -> Outcome:
    """Run ``code`` in a fresh interpreter with at most ``memory`` bytes of address space.

    The code calls ``report(**fields)`` to hand JSON-serializable facts back to the test, and
    ``peak()`` for the most memory it has held so far, in bytes.
    A child that outlives ``timeout`` seconds fails the calling test.
    """
    if sys.platform != "linux":  # RLIMIT_AS is what makes the limit hold
        pytest.skip("memory-limited children need Linux")
    source = _PRELUDE.format(memory=memory) + textwrap.dedent(code)
    try:
        completed = subprocess.run(
            [sys.executable, "-c", source],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env={"PYTHONPATH": str(REPOSITORY), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child did not finish within {timeout:g} s")
    result = None
    for line in completed.stdout.splitlines():
        if line.startswith("@@result@@"):
            result = json.loads(line.removeprefix("@@result@@"))
    return Outcome(completed.returncode, result, completed.stdout, completed.stderr)
