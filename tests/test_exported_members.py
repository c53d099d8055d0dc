"""``modelkit.__all__`` lists exactly the public names, sorted."""

import modelkit

# Integrations and tools are imported by name (``from modelkit.flask import ModelKit``), not
# re-exported: importing one makes it an attribute of the package, whatever __all__ says.
SUBMODULES = {"cli", "django", "errors", "fastapi", "flask", "spark", "testing"}


def test_all_matches_public_names() -> None:
    public = {
        name
        for name in dir(modelkit)
        if not name.startswith("_") and name not in {"annotations", *SUBMODULES}
    } | {"__version__"}
    assert set(modelkit.__all__) == public


def test_all_is_sorted() -> None:
    assert list(modelkit.__all__) == sorted(modelkit.__all__)


def test_every_error_is_importable_from_the_top_level() -> None:
    from modelkit import errors

    for name in errors.__all__:
        assert getattr(modelkit, name) is getattr(errors, name)
