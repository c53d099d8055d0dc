"""The one version-compatibility rule, shared by load, the Django checks and the CLI."""

from __future__ import annotations

import pytest

from modelkit._environment import package_status, python_status, release, same_release_line


@pytest.mark.parametrize(
    ("recorded", "installed", "status"),
    [
        ("1.5.2", "1.5.2", "ok"),
        ("1.5.2", "1.6.0", "differs"),
        ("1.5.2", "1.4.0rc1", "differs"),
        ("1.5.2", "2.0.0", "incompatible"),
        ("2.0", "1.9", "incompatible"),
        ("1.5.2", None, "missing"),
    ],
)
def test_a_package_loads_across_one_major_version_only(
    recorded: str, installed: str | None, status: str
) -> None:
    assert package_status(recorded, installed) == status


def test_python_must_match_its_minor_version() -> None:
    assert python_status("3.11.4", "3.11.9") == "ok"
    assert python_status("3.11.4", "3.12.0") == "differs"


def test_release_reads_the_numeric_part_of_a_version() -> None:
    assert release("v1.5.2rc1") == (1, 5, 2)
    assert release("not a version") == ()
    assert same_release_line("1.0", "1.99.3")
