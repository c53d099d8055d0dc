"""The exceptions modelkit raises.

Every error modelkit raises on purpose derives from :class:`ModelkitError`, and each also inherits
the built-in exception an existing ``except`` clause would expect::

    ModelkitError
    ├── BundleError              bad, missing or unsupported bundle / manifest / archive
    │   └── IntegrityError       a hash, size, digest or file list does not match
    ├── InvalidInputError        (also ValueError) a record or batch does not fit the signature
    ├── EnvironmentMismatchError the bundle needs library versions this process does not have
    ├── ReproducibilityError     the model no longer answers its stored reference cases
    ├── ConversionError          scikit-learn -> ONNX failed or failed its parity check
    └── MissingDependencyError   (also ModuleNotFoundError) an optional extra is not installed

Two warnings (``UserWarning``) say that a model loaded although something differs:
``EnvironmentMismatchWarning`` (other library versions) and ``ReproducibilityWarning`` (changed
answers, loaded with ``check="warn"``).

Context lives in attributes (``err.path``, ``err.field``, ``err.index``) as well as in the text.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BundleError",
    "ConversionError",
    "EnvironmentMismatchError",
    "EnvironmentMismatchWarning",
    "IntegrityError",
    "InvalidInputError",
    "MissingDependencyError",
    "ModelkitError",
    "ReproducibilityError",
    "ReproducibilityWarning",
]


class ModelkitError(Exception):
    """Base class of every error modelkit raises on purpose."""


class BundleError(ModelkitError):
    """A bundle, its manifest or its archive is missing, malformed or unsupported.

    Attributes:
        path: the bundle, or the file inside it, that the error is about (``None`` if unknown).
        untrusted_types: for a skops bundle refused because of the types it holds, those the
            caller did not trust (``("sklearn.tree._tree.Tree",)``); empty otherwise.
    """

    def __init__(
        self, message: str, *, path: str | None = None, untrusted_types: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.path = path
        self.untrusted_types = untrusted_types


class IntegrityError(BundleError):
    """A file's hash or size, the file list, or the bundle's digest does not match what was pinned.

    Attributes:
        path: the file (or bundle) that failed the check.
        expected: what the manifest or the caller pinned.
        actual: what was found.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.expected = expected
        self.actual = actual


class InvalidInputError(ModelkitError, ValueError):
    """A record or batch does not fit the model's input signature.

    Attributes:
        field: the offending field (column or tensor name), or ``None`` for the record as a whole.
        index: the record's position in the batch, or ``None`` for a single record.
        errors: every problem found, as dicts with ``field``, ``index`` and ``message``.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        index: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.index = index
        self.errors = (
            errors if errors is not None else [{"field": field, "index": index, "message": message}]
        )


class EnvironmentMismatchError(ModelkitError):
    """The bundle was saved with library versions this process cannot honour.

    Attributes:
        mismatches: ``{package: (recorded, installed)}``; ``installed`` is ``None`` when absent.
    """

    def __init__(
        self, message: str, *, mismatches: dict[str, tuple[str, str | None]] | None = None
    ) -> None:
        super().__init__(message)
        self.mismatches = mismatches or {}


class EnvironmentMismatchWarning(UserWarning):
    """The bundle was saved with other library versions; it loads, but results may differ."""


class ReproducibilityError(ModelkitError):
    """The model no longer answers its stored reference cases as it did when it was saved.

    Typically a library upgrade changed what the pickled model computes.

    Attributes:
        rows: the sample rows (as numbered when it was saved) whose answers differ.
        largest_difference: the largest numeric difference beyond the tolerance, or ``None``
            when a label changed or the model refused the inputs.
        versions: ``{package: (recorded, installed)}`` for every package the bundle recorded,
            and ``"python"``; ``installed`` is ``None`` when absent.
    """

    def __init__(
        self,
        message: str,
        *,
        rows: list[int] | None = None,
        largest_difference: float | None = None,
        versions: dict[str, tuple[str, str | None]] | None = None,
    ) -> None:
        super().__init__(message)
        self.rows = rows or []
        self.largest_difference = largest_difference
        self.versions = versions or {}


class ReproducibilityWarning(UserWarning):
    """The model no longer answers its reference cases; loaded anyway (``check="warn"``)."""


class ConversionError(ModelkitError):
    """Converting a model to another format failed, or the result failed its parity check."""


class MissingDependencyError(ModelkitError, ModuleNotFoundError):
    """A feature needs an optional dependency that is not installed.

    Attributes:
        extra: the ``modelkit`` extra that provides it.
    """

    def __init__(self, message: str, *, name: str | None = None, extra: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra
