"""The ``python`` format: custom models, subclasses of :class:`modelkit.Model`.

The bundle holds the files the model writes in ``save_artifacts`` and the import path of its
class; the code itself ships with the application, like any other module of it. The format lives
beside the model class it saves (the adapter table finds it by import path), and what it loads is
a :class:`CustomRunner` holding the ready model, which :func:`model_for` hands out.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._environment import distribution_of, installed_version
from ._model import Features, Model
from ._protocol import Runner, SavedModel
from ._runner_model import RunnerModel
from ._spec import Outputs, TabularInputs, TensorInputs
from .errors import BundleError

if TYPE_CHECKING:
    from ._bundle import Artifacts
    from ._manifest import Manifest

__all__ = ["CustomRunner", "PythonAdapter", "model_for"]


class CustomRunner:
    """What the python format loads: the custom model, which runs its own batches.

    Attributes:
        model: the instance its class's ``from_artifacts`` built.
    """

    def __init__(self, model: Model[Any, Any]) -> None:
        self.model = model

    def run(self, inputs: Any) -> Mapping[str, Any]:
        """The model's ``run_batch`` on validated inputs, as the ``outputs`` field."""
        return {"outputs": list(self.model.run_batch(list(inputs)))}


def model_for(
    manifest: Manifest, digest: str, runner: Runner, features: Features
) -> Model[Any, Any]:
    """The model to hand out for what an adapter loaded, built with its features."""
    if isinstance(runner, CustomRunner):
        runner.model._bind(manifest, digest, features)
        return runner.model
    return RunnerModel(manifest, digest, runner, features)


class PythonAdapter:
    """Saves a custom model's artifacts and class path; loads by importing the class."""

    name = "python"
    options = ()

    def accepts(self, obj: object) -> bool:
        return isinstance(obj, Model) and not isinstance(obj, RunnerModel)

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        sample_input: Any,
        inputs: TabularInputs | TensorInputs | None,
        outputs: Outputs | None,
    ) -> SavedModel:
        if not self.accepts(obj):
            raise BundleError(
                "The python format saves subclasses of modelkit.Model, "
                f"not {type(obj).__qualname__}."
            )
        cls = type(obj)
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            raise BundleError(
                f"{cls.__qualname__} is defined in {cls.__module__!r}"
                f"{' inside a function' if '<locals>' in cls.__qualname__ else ''}, so a loading "
                "process could not import it. Move it into a module of your package."
            )
        obj.save_artifacts(directory)
        if sample_input is not None:
            obj.predict_batch(sample_input if isinstance(sample_input, list) else [sample_input])
        packages = {}
        owner = distribution_of(cls.__module__)
        if owner and (version := installed_version(owner)):
            packages[owner] = version
        return SavedModel(
            signature=obj.signature,
            details={"class": f"{cls.__module__}:{cls.__qualname__}"},
            packages=packages,
        )

    def load(
        self, artifacts: Artifacts, manifest: Manifest, *, options: Mapping[str, Any]
    ) -> CustomRunner:
        path = manifest.adapter.get("class")
        if not isinstance(path, str) or ":" not in path:
            raise BundleError(
                f"The manifest of {manifest.name!r} names no model class (adapter.class).",
                path="modelkit.json",
            )
        module_name, _, qualname = path.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise BundleError(
                f"Bundle {manifest.name!r} needs the class {path}, which this process cannot "
                f"import ({exc}). Install the package that defines it."
            ) from exc
        if not (isinstance(target, type) and issubclass(target, Model)):
            raise BundleError(f"{path} is not a subclass of modelkit.Model; refusing to load it.")
        model = target.from_artifacts(artifacts)
        if not isinstance(model, target):
            raise BundleError(f"{path}.from_artifacts returned a {type(model).__qualname__}.")
        return CustomRunner(model)
