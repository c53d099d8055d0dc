"""modelkit: embed trained models in Python applications, verified, validated and observable.

Save a fitted model as a bundle, ship it with your application, load it at start-up and call
one interface whatever its format::

    import modelkit

    modelkit.save(pipeline, "churn", name="churn", version="1.0.0", sample_input=X_train[:100])
    model = modelkit.load("churn")
    model.predict({"tenure": 12, "plan": "pro"})
"""

from . import adapters, monitoring, telemetry
from ._api import convert, digest, load, save
from ._batching import Batching
from ._bundle import Artifacts
from ._hooks import Hook, PredictionContext, add_hook, remove_hook
from ._manifest import Manifest
from ._mlflow import import_mlflow
from ._model import Model
from ._prediction_log import PredictionLogger
from ._predictions import ClassifierOutput, Predictions, RegressorOutput, TensorOutput
from ._registry import Registry, Route
from ._spec import ColumnSpec, Outputs, Signature, TabularInputs, TensorInputs, TensorSpec
from ._version import __version__
from .errors import (
    BundleError,
    ConversionError,
    EnvironmentMismatchError,
    EnvironmentMismatchWarning,
    IntegrityError,
    InvalidInputError,
    MissingDependencyError,
    ModelkitError,
    ReproducibilityError,
    ReproducibilityWarning,
)

__all__ = [
    "Artifacts",
    "Batching",
    "BundleError",
    "ClassifierOutput",
    "ColumnSpec",
    "ConversionError",
    "EnvironmentMismatchError",
    "EnvironmentMismatchWarning",
    "Hook",
    "IntegrityError",
    "InvalidInputError",
    "Manifest",
    "MissingDependencyError",
    "Model",
    "ModelkitError",
    "Outputs",
    "PredictionContext",
    "PredictionLogger",
    "Predictions",
    "Registry",
    "RegressorOutput",
    "ReproducibilityError",
    "ReproducibilityWarning",
    "Route",
    "Signature",
    "TabularInputs",
    "TensorInputs",
    "TensorOutput",
    "TensorSpec",
    "__version__",
    "adapters",
    "add_hook",
    "convert",
    "digest",
    "import_mlflow",
    "load",
    "monitoring",
    "remove_hook",
    "save",
    "telemetry",
]
