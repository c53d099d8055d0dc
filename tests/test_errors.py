"""The error tree: every class under ModelkitError, each also the matching built-in."""

import pytest

import modelkit
from modelkit import errors


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (modelkit.BundleError, (modelkit.ModelkitError,)),
        (modelkit.IntegrityError, (modelkit.BundleError,)),
        (modelkit.InvalidInputError, (modelkit.ModelkitError, ValueError)),
        (modelkit.EnvironmentMismatchError, (modelkit.ModelkitError,)),
        (modelkit.ConversionError, (modelkit.ModelkitError,)),
        (modelkit.MissingDependencyError, (modelkit.ModelkitError, ModuleNotFoundError)),
    ],
)
def test_error_inherits_its_parents(error: type[Exception], bases: tuple[type, ...]) -> None:
    for base in bases:
        assert issubclass(error, base)


def test_the_tree_drawn_in_errors_module_names_every_class() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        if name != "EnvironmentMismatchWarning":
            assert name in doc


def test_invalid_input_error_keeps_context_in_attributes() -> None:
    err = modelkit.InvalidInputError("bad", field="age", index=3)
    assert (err.field, err.index) == ("age", 3)
    assert err.errors == [{"field": "age", "index": 3, "message": "bad"}]


def test_missing_dependency_error_names_the_extra() -> None:
    from modelkit._deps import require

    with pytest.raises(modelkit.MissingDependencyError) as info:
        require("modelkit_no_such_module", extra="spark", feature="Scoring on Spark")
    assert "pip install '.[spark]'" in str(info.value)
    assert info.value.extra == "spark"
    assert isinstance(info.value, ImportError)
