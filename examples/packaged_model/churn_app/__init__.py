"""An application package that ships its model: a bundle as package data, pinned by a lock file.

The bundle is read through ``importlib.resources``, so it loads the same from a wheel installed
in site-packages, an editable install, or the package imported from a zip; and it must have the
digest the lock file records, checked before anything is deserialized.
"""

from __future__ import annotations

import functools
import sys
from importlib.resources import files
from typing import Any

import modelkit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["model", "predict"]


@functools.cache
def model() -> modelkit.Model[Any, Any]:
    """The churn model, loaded once per process and verified against the lock file."""
    package = files(__package__)
    lock = tomllib.loads((package / "models.lock").read_text(encoding="utf-8"))
    pinned = lock["models"]["churn"]
    return modelkit.load(package / pinned["path"], sha256=pinned["sha256"])


def predict(record: dict[str, float]) -> dict[str, Any]:
    """Score one customer: the predicted class and its probabilities."""
    return model().predict(record).to_dict()
