"""``modelkit.save``, ``modelkit.load`` and ``modelkit.digest``: the calls of the bundle API."""

from __future__ import annotations

import functools
import logging
import os
import platform
import re
import shutil
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import BaseModel, JsonValue, TypeAdapter, ValidationError

from . import _environment, _reference, adapters, telemetry
from ._batching import Batching
from ._bundle import DEFAULT_MAX_BUNDLE_SIZE, Artifacts, VerifiedBundle, digest, open_bundle
from ._custom import model_for
from ._environment import VersionPolicy
from ._infer import tabular_inputs_from_model
from ._manifest import ARTIFACTS_DIR, Artifact, Environment, Manifest, normalize_digest
from ._model import Features, Model, observer_of, warm_up
from ._protocol import Runner
from ._publish import is_bundle, list_artifacts, now, publish, staging_directory, write_manifest
from ._reference import CheckPolicy
from ._runner_model import RunnerModel
from ._spec import Outputs, SchemaInputs, Signature, Table, TabularInputs, Task, TensorInputs
from ._validation import TabularValidator
from .errors import BundleError, ConversionError, ModelkitError

__all__ = ["convert", "digest", "load", "run_reference_cases", "save", "type_names"]

logger = logging.getLogger("modelkit")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TASKS = typing.get_args(Task)
_metadata_adapter: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(dict[str, JsonValue])


def save(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    format: str = "auto",
    sample_input: Any = None,
    signature: Signature | type[BaseModel] | None = None,
    task: Task | None = None,
    metadata: Mapping[str, Any] | None = None,
    reference: Any = None,
    overwrite: bool = False,
) -> Manifest:
    """Save a fitted model as a bundle: its artifacts plus a manifest that describes and pins them.

    The bundle is built in a hidden sibling directory and renamed into place, so a crash leaves
    the previous bundle (or none), never a partial one.

    Args:
        obj: a fitted scikit-learn estimator or pipeline (or any picklable object with
            ``predict``), an ONNX model (``onnx.ModelProto``, bytes, or a path to ``.onnx``),
            or an instance of a :class:`modelkit.Model` subclass.
        path: the bundle directory to create, or a ``.zip`` file.
        name: the model's name, such as ``"churn"`` (letters, digits, ``.``, ``_``, ``-``).
        version: the model's version, such as ``"1.4.0"``.
        format: ``"joblib"``, ``"onnx"``, ``"python"``, a third-party adapter, or ``"auto"``.
        sample_input: a few rows of training data (DataFrame, 2-D array or list of dicts); the
            signature is inferred from it, and the model must predict on it before anything is
            written. Up to 50 of its rows and the model's answers on them are kept as reference
            cases (tabular models), which ``load`` runs again.
        signature: the inputs, as a :class:`Signature` or a pydantic model with one field per
            column, when there is no sample (or to override the inferred one).
        task: ``"classification"``, ``"regression"`` or ``"tensor"``, when inference guesses
            wrong.
        metadata: JSON-compatible facts to keep in the manifest (training data, metrics...).
        reference: the data to profile for drift statistics (a DataFrame, 2-D array or list of
            records, typically the training set); ``sample_input`` is profiled when absent.
        overwrite: replace an existing bundle at ``path``.

    Returns:
        The manifest written to ``modelkit.json``.

    Raises:
        BundleError: ``path`` exists and ``overwrite`` is false, or the object cannot be saved.
        InvalidInputError: the sample input cannot give a signature.
    """
    _check_name("name", name)
    _check_name("version", version)
    if task is not None and task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
    target = _target(path, overwrite=overwrite)
    meta = _metadata(metadata)
    inputs, outputs = _declared(signature, task)
    adapter = adapters.for_object(obj) if format == "auto" else adapters.get(format)

    def write(directory: Path) -> adapters.SavedModel:
        if adapter.name == "onnx" and not adapter.accepts(obj) and hasattr(obj, "predict"):
            # A scikit-learn estimator: converted, and checked against itself, before writing.
            from ._convert import convert_estimator
            from .adapters._onnx import ARTIFACT

            converted = convert_estimator(
                obj, sample_input=sample_input, inputs=inputs, outputs=outputs
            )
            (directory / ARTIFACT).write_bytes(converted.data)
            return converted.saved
        return adapter.save(
            obj, directory, sample_input=sample_input, inputs=inputs, outputs=outputs
        )

    return _write_bundle(
        target,
        adapter,
        write,
        name=name,
        version=version,
        metadata=meta,
        reference=reference if reference is not None else sample_input,
        sample_input=sample_input,
        overwrite=overwrite,
    )


def convert(
    source: Any,
    path: str | os.PathLike[str],
    *,
    to: str = "onnx",
    sample_input: Any = None,
    name: str | None = None,
    version: str | None = None,
    sha256: str | None = None,
    trusted_types: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Convert a saved scikit-learn bundle to an ONNX bundle, checked for parity first.

    The ONNX bundle answers like the original (labels identical, probabilities and values within
    the documented tolerance) on the sample rows and on rows generated from the signature;
    otherwise nothing is written. Its manifest records the parity report and the source's
    digest, and keeps the source's drift profile. To convert an estimator in memory, use
    ``modelkit.save(estimator, path, format="onnx", sample_input=...)``.

    Args:
        source: the joblib or skops bundle (directory, ``.zip`` or Traversable), verified
            before loading.
        path: the ONNX bundle to create.
        to: the target format; ``"onnx"``.
        sample_input: training rows to check parity on; rows are generated from the source's
            reference profile when absent.
        name: the new bundle's name (the source's by default).
        version: the new bundle's version (the source's by default).
        sha256: the digest the source must have.
        trusted_types: for a skops source, the types it may hold beyond skops' defaults, as
            :func:`load` takes them.
        metadata: merged into the source's metadata.
        overwrite: replace an existing bundle at ``path``.

    Returns:
        The new bundle's manifest.

    Raises:
        ConversionError: the source is not a scikit-learn bundle, skl2onnx cannot convert it,
            or the converted model misses parity (the message shows the worst rows).
        BundleError: the source is not a valid bundle, or ``path`` exists.
    """
    from ._convert import convert_estimator
    from .adapters._onnx import ARTIFACT

    if to != "onnx":
        raise ValueError(f"modelkit converts to 'onnx' only, got to={to!r}")
    model = _load(
        source,
        sha256=sha256,
        trusted=False,
        trusted_types=type_names(trusted_types),
        version_policy="warn",
        check="error",
        adapter_options=None,
        features=Features(),
    )
    manifest = model.manifest
    assert manifest is not None
    if manifest.format not in ("joblib", "skops") or not isinstance(model, RunnerModel):
        raise ConversionError(
            f"{_label(source)!r} is a {manifest.format} bundle; conversion to ONNX takes a "
            "scikit-learn model saved in the joblib or skops format."
        )
    estimator = getattr(model.runner, "estimator", None)
    name = manifest.name if name is None else name
    version = manifest.version if version is None else version
    _check_name("name", name)
    _check_name("version", version)
    target = _target(path, overwrite=overwrite)
    origin = {"digest": model.digest, "format": manifest.format, "version": manifest.version}
    meta = _metadata({**manifest.metadata, **(metadata or {}), "converted_from": origin})
    signature = manifest.signature

    def write(directory: Path) -> adapters.SavedModel:
        converted = convert_estimator(
            estimator,
            sample_input=sample_input,
            inputs=signature.inputs if isinstance(signature.inputs, TabularInputs) else None,
            outputs=signature.outputs,
            profile=manifest.profile,
        )
        (directory / ARTIFACT).write_bytes(converted.data)
        return converted.saved

    return _write_bundle(
        target,
        adapters.get("onnx"),
        write,
        name=name,
        version=version,
        metadata=meta,
        reference=sample_input,
        sample_input=sample_input,
        profile=manifest.profile if sample_input is None else None,
        overwrite=overwrite,
    )


def _target(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Where a bundle will be written, refusing to replace anything that is not a bundle."""
    target = Path(os.fspath(path))
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise BundleError(
                f"A bundle already exists at {str(target)!r}; pass overwrite=True to replace it.",
                path=str(target),
            )
        if not is_bundle(target):
            raise BundleError(
                f"{str(target)!r} exists and is not a bundle; refusing to replace it.",
                path=str(target),
            )
    try:
        # As os.makedirs(exist_ok=True): "models/churn" in a fresh checkout just works.
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(
            f"Cannot create the directory {str(target.parent)!r}: {exc.strerror or exc}.",
            path=str(target),
        ) from exc
    return target


def _metadata(metadata: Mapping[str, Any] | None) -> dict[str, JsonValue]:
    try:
        return _metadata_adapter.validate_python(dict(metadata or {}))
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise BundleError(
            f"metadata must hold JSON values only; {where}: {exc.errors()[0]['msg']}."
        ) from None


def _write_bundle(
    target: Path,
    adapter: adapters.Adapter,
    write: Callable[[Path], adapters.SavedModel],
    *,
    name: str,
    version: str,
    metadata: dict[str, JsonValue],
    reference: Any,
    sample_input: Any,
    profile: dict[str, Any] | None = None,
    overwrite: bool,
) -> Manifest:
    """Build a bundle in a staging sibling of ``target`` and rename it into place."""
    staging = staging_directory(target)
    try:
        (staging / ARTIFACTS_DIR).mkdir()
        saved = write(staging / ARTIFACTS_DIR)
        inputs = saved.signature.inputs
        wants_profile = profile is None and reference is not None
        if isinstance(inputs, TabularInputs) and (wants_profile or sample_input is not None):
            runner = _draft_runner(adapter, staging, saved)
            sample = None if sample_input is None else _answers(inputs, runner, sample_input)
            keeps = _reference.keeps_cases(adapter.name, saved.signature)
            if keeps and sample is not None and sample[1] is not None and runner is not None:
                _reference.write(
                    staging / ARTIFACTS_DIR, saved.signature, runner, sample[0], sample[1]
                )
            if wants_profile:
                answered = sample if reference is sample_input and sample is not None else None
                table, outputs = answered or _answers(inputs, runner, reference)
                profile = _profile(saved, inputs, table, outputs)
        artifacts = list_artifacts(staging)
        manifest = Manifest(
            name=name,
            version=version,
            format=adapter.name,
            task=saved.signature.outputs.task,
            signature=saved.signature,
            artifacts=tuple(artifacts),
            environment=Environment(
                python=platform.python_version(), packages=dict(saved.packages)
            ),
            created_at=now(),
            metadata=metadata,
            adapter=dict(saved.details),
            profile=profile,
        )
        write_manifest(staging, manifest)
        publish(staging, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _draft_runner(
    adapter: adapters.Adapter, staging: Path, saved: adapters.SavedModel
) -> adapters.Runner | None:
    """The model being saved, loaded back from its staged artifacts, to answer sample rows."""
    files = {
        path.relative_to(staging / ARTIFACTS_DIR).as_posix(): path.read_bytes()
        for path in sorted((staging / ARTIFACTS_DIR).rglob("*"))
        if path.is_file()
    }
    draft = Manifest.model_construct(
        name="draft",
        version="0",
        format=adapter.name,
        task=saved.signature.outputs.task,
        signature=saved.signature,
        adapter=dict(saved.details),
    )
    options: dict[str, Any] = {}
    if adapter.name == "skops":
        from .adapters._skops import ARTIFACT, untrusted_types

        # The caller's own object, written from memory a moment ago: the types it holds are
        # trusted for this draft only. Loading the bundle trusts what its caller passes.
        options["trusted_types"] = tuple(untrusted_types(files[ARTIFACT], path=ARTIFACT))
    try:
        runner = adapter.load(Artifacts(files), draft, options=options)
    except Exception as exc:  # noqa: BLE001 - answers are a bonus; the bundle stands without
        logger.warning("Saving without reference cases or output profile: %s", exc)
        return None
    return runner if isinstance(runner, adapters.Runner) else None


def _answers(
    inputs: TabularInputs, runner: adapters.Runner | None, data: Any
) -> tuple[Table, dict[str, Any] | None]:
    """Rows as the validated table, and the model's answers on them if it gives any."""
    table = TabularValidator(inputs).batch(data)
    if runner is None or not table.length:
        return table, None
    try:
        return table, dict(runner.run(table))
    except Exception as exc:  # noqa: BLE001 - answers are a bonus; the bundle stands without
        logger.warning("Saving without reference cases or output profile: %s", exc)
        return table, None


def _profile(
    saved: adapters.SavedModel,
    inputs: TabularInputs,
    table: Table,
    outputs: dict[str, Any] | None,
) -> dict[str, Any]:
    """The drift profile of the reference data, outputs included when the model ran them."""
    from ._profile import profile_reference

    return profile_reference(
        inputs,
        table,
        outputs=outputs,
        output_task=saved.signature.outputs.task,
        classes=saved.signature.outputs.classes,
    )


def type_names(trusted_types: Sequence[str] | None) -> tuple[str, ...]:
    """``trusted_types`` as a tuple of names, refusing a bare string (which would iterate into
    one-letter names) and anything but strings."""
    if trusted_types is None:
        return ()
    # Read once: a generator checked and then copied would be empty by the copy.
    names = None if isinstance(trusted_types, str | bytes) else tuple(trusted_types)
    if names is None or not all(isinstance(name, str) for name in names):
        raise TypeError(
            "trusted_types takes a list of full type names, such as "
            f"['sklearn.tree._tree.Tree'], got {trusted_types!r}."
        )
    return names


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.match(value) or len(value) > 100:
        raise ValueError(
            f"{what} must be a non-empty string of letters, digits, '.', '_' and '-' "
            f"(at most 100), got {value!r}"
        )


def _declared(
    signature: Signature | type[BaseModel] | None, task: Task | None
) -> tuple[TabularInputs | TensorInputs | None, Outputs | None]:
    """What the caller declared: the inputs, and the outputs (at least the task) if any."""
    if isinstance(signature, Signature):
        if isinstance(signature.inputs, SchemaInputs):
            raise TypeError("A schema signature belongs to a custom model; save the model itself.")
        if task is not None and task != signature.outputs.task:
            raise ValueError(
                f"task={task!r} contradicts the signature's task {signature.outputs.task!r}"
            )
        return signature.inputs, signature.outputs
    outputs = None if task is None else Outputs(task=task)
    if signature is None:
        return None, outputs
    if isinstance(signature, type) and issubclass(signature, BaseModel):
        return tabular_inputs_from_model(signature), outputs
    raise TypeError(
        f"signature must be a modelkit Signature or a pydantic model class, got {signature!r}"
    )


def load(
    path: Any,
    *,
    sha256: str | None = None,
    max_bundle_size: int | None = DEFAULT_MAX_BUNDLE_SIZE,
    trusted: bool = False,
    trusted_types: Sequence[str] | None = None,
    version_policy: VersionPolicy = "warn",
    check: CheckPolicy = "auto",
    warmup: bool = False,
    adapter_options: Mapping[str, Any] | None = None,
    drift: bool = False,
    batching: bool | Batching = False,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> Model[Any, Any]:
    """Load a model, verifying every byte before any deserializer sees it.

    Args:
        path: a bundle directory, a ``.zip`` bundle, an ``importlib.resources`` Traversable
            (package data, also inside a zipped wheel), or a bare ``.onnx`` file. A bare
            ``.joblib``/``.pkl`` file loads only with ``trusted=True``.
        sha256: the digest the bundle must have (see :func:`digest`); checked right after the
            manifest is read, before any artifact is.
        max_bundle_size: refuse a bundle whose manifest declares more bytes of artifacts (or a
            bare file larger) than this, before reading them: 2 GiB by default, ``None`` for no
            limit. Every artifact is held in memory while it loads.
        trusted: allow a bare pickle file, which runs code while it loads.
        trusted_types: types a skops bundle may hold beyond those skops trusts by default, by
            full name (``["sklearn.tree._tree.Tree"]``), after you reviewed them; an untrusted
            type refuses the bundle, with the list. Other formats ignore it.
        version_policy: what to do when the bundle was saved with other library versions:
            ``"warn"`` (minor and patch differences warn, major ones raise), ``"error"`` or
            ``"ignore"``. Checked before unpickling.
        check: whether to run the reference cases saved with the model once it is loaded, and
            what to do when it no longer answers them (labels equal, numbers within the
            tolerance). ``"auto"`` runs them when a library the bundle records (or Python, for
            pickled formats) has another version in this process, the case they exist for, and
            raises if they fail; the same versions run the same code, and the load costs nothing
            more. ``"error"`` always runs them and raises, ``"warn"`` always runs them and warns
            and hands the model out, ``"off"`` never runs them. Bundles without reference cases
            load as before.
        warmup: run the reference cases through the loaded model before handing it out, each
            with ``predict``'s path and all with ``predict_batch``'s (and through the
            batching worker), so the first caller pays no first-call cost. No hook, span,
            metric, prediction log or drift statistic sees them; a bundle without reference
            cases is not warmed up.
        adapter_options: options for the format's runtime, such as
            ``{"intra_op_num_threads": 0}`` for onnx (a thread per core).
        drift: keep streaming statistics of what the model receives and predicts, compared with
            the reference profile saved in the bundle by :meth:`Model.drift`.
        batching: coalesce concurrent single-record ``predict``/``apredict`` calls (from many
            threads or tasks) into one vectorized call: ``True`` for :class:`Batching`'s
            defaults, or a :class:`Batching` with the maximum batch size and wait. Call
            :meth:`Model.close` (or use the model as a context manager) to stop its worker.
        tracer_provider: an OpenTelemetry tracer provider for this model's spans (and the
            ``load`` span); the global one by default.
        meter_provider: an OpenTelemetry meter provider for its metrics; the global one by default.

    Returns:
        A :class:`modelkit.Model`.

    Raises:
        BundleError: the path is missing or not a bundle, a bare pickle without ``trusted``,
            a skops bundle holding types not trusted (``err.untrusted_types``), or larger than
            ``max_bundle_size``.
        IntegrityError: a file, size or the digest does not match.
        EnvironmentMismatchError: the library versions differ beyond ``version_policy``.
        ReproducibilityError: the model no longer answers its reference cases, and ``check``
            is ``"auto"`` or ``"error"``.
        ModelkitError: with ``warmup``, the model raised on its reference cases; or
            ``batching`` was asked of a model without a tabular signature.
        TypeError: ``batching`` is neither a bool nor a :class:`Batching`; ``trusted_types``
            is not a list of names.
    """
    if check not in _reference.POLICIES:
        raise ValueError(f"check must be one of {_reference.POLICIES}, got {check!r}")
    if not isinstance(batching, bool | Batching):
        raise TypeError(
            f"batching must be True, False or a modelkit.Batching, got {type(batching).__name__}."
        )
    tel = telemetry.for_providers(tracer_provider, meter_provider)
    features = Features(
        telemetry=tel if tracer_provider is not None or meter_provider is not None else None,
        drift=drift,
        batching=(Batching() if batching is True else batching) or None,
    )
    arguments: dict[str, Any] = {
        "sha256": sha256,
        "trusted": trusted,
        "trusted_types": type_names(trusted_types),
        "version_policy": version_policy,
        "check": check,
        "warmup": warmup,
        "adapter_options": adapter_options,
        "features": features,
        "max_bundle_size": max_bundle_size,
    }
    if not tel.is_active:
        model = _load(path, **arguments)
    else:
        model = _observed_load(tel, path, **arguments)
    logger.info(
        "Loaded model %r version %s (%s) from %s, digest %s",
        model.name,
        model.version,
        model.format,
        _label(path),
        model.digest,
    )
    return model


def _label(path: Any) -> str:
    return os.fspath(path) if isinstance(path, str | os.PathLike) else str(path)


def _observed_load(tel: telemetry.Telemetry, path: Any, **kwargs: Any) -> Model[Any, Any]:
    """:func:`_load` inside a ``load {name}`` span, timed into ``modelkit.model.load.duration``."""
    started = time.perf_counter()
    span = token = None
    if tel.tracer is not None:
        span = tel.tracer.start_span(
            f"load {Path(_label(path)).name}", kind=trace.SpanKind.INTERNAL
        )
        token = otel_context.attach(trace.set_span_in_context(span))
    try:
        model = _load(path, **kwargs)
    except Exception as exc:
        error_type = telemetry.error_type(exc)
        if span is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
            span.record_exception(exc)
        if tel.meter is not None:
            tel.load_duration.record(time.perf_counter() - started, {"error.type": error_type})
        raise
    else:
        attributes = observer_of(model).attributes()
        if span is not None:
            span.update_name(f"load {model.name}")
            span.set_attributes(attributes)
        if tel.meter is not None:
            tel.load_duration.record(time.perf_counter() - started, attributes)
        return model
    finally:
        if token is not None:
            otel_context.detach(token)
        if span is not None:
            span.end()


def _load(
    path: Any,
    *,
    sha256: str | None,
    trusted: bool,
    version_policy: VersionPolicy,
    check: CheckPolicy,
    adapter_options: Mapping[str, Any] | None,
    features: Features,
    max_bundle_size: int | None = DEFAULT_MAX_BUNDLE_SIZE,
    warmup: bool = False,
    trusted_types: tuple[str, ...] = (),
) -> Model[Any, Any]:
    pinned = None if sha256 is None else normalize_digest(sha256)
    # The pin is checked as soon as the manifest is read (a bare file's, once it is read).
    opened = open_bundle(path, sha256=pinned, max_bundle_size=max_bundle_size)
    if opened.kind == "pickle" and not trusted:
        raise BundleError(
            f"Refusing to load {opened.label!r}: a bare pickle runs arbitrary code while it loads, "
            "and nothing records what it should contain. Save the model as a bundle with "
            "modelkit.save(), or pass trusted=True if this file comes from you.",
            path=opened.label,
        )
    options = dict(adapter_options or {})
    if opened.bundle is None:
        assert opened.data is not None
        found = opened.digest
        runner, manifest = _load_bare(opened.kind, opened.label, opened.data, found, options)
        return model_for(manifest, opened.digest, runner, features)
    bundle = opened.bundle
    manifest = bundle.manifest
    # Versions are compared before unpickling; those that only warn are reported once the
    # reference cases have said whether the answers changed.
    mild = _environment.check(
        manifest.environment,
        version_policy,
        label=opened.label,
        compare_python=_environment.depends_on_python(manifest.format),
    )
    # The cases are parsed before the model is deserialized: a malformed file fails first.
    runs = check in ("error", "warn") or (
        check == "auto"
        and _environment.differs(
            manifest.environment, compare_python=_environment.depends_on_python(manifest.format)
        )
    )
    cases = _reference.read(bundle.artifacts, manifest) if runs or warmup else None
    loaded = _runner(bundle, options, trusted_types)
    verdict = None if cases is None or not runs else _reference.run(cases, loaded)
    _reference.enforce(verdict, check, label=opened.label, manifest=manifest, mild=mild)
    # The model keeps the verdict for its report (None when the cases did not run).
    model = model_for(manifest, bundle.digest, loaded, replace(features, verdict=verdict))
    if warmup and cases is not None:
        try:
            warm_up(model, cases.table.records())
        except BaseException as exc:
            model.close()  # stops its batching worker, if any: nobody else holds the model
            if isinstance(exc, ModelkitError) or not isinstance(exc, Exception):
                raise
            # The model's own code raised: it would have failed its first request the same way.
            raise ModelkitError(
                f"Model {manifest.name!r} {manifest.version} from {opened.label!r} failed on its "
                f"reference cases while warming up: {type(exc).__name__}: {exc}"
            ) from exc
    return model


def _runner(
    bundle: VerifiedBundle, options: Mapping[str, Any], trusted_types: tuple[str, ...] = ()
) -> Runner:
    """What the bundle's adapter loads from its verified artifacts.

    An adapter that declares a ``trusted_types`` option (skops) gets the caller's
    ``trusted_types`` there, and only there: the caller holds the trust, not the options.
    """
    adapter = adapters.get(bundle.manifest.format)
    if "trusted_types" in options:
        raise TypeError("Pass trusted_types= to modelkit.load, not in adapter_options.")
    adapters.check_options(adapter, options)
    if "trusted_types" in (getattr(adapter, "options", None) or ()):
        options = {**options, "trusted_types": trusted_types}
    try:
        return adapter.load(bundle.artifacts, bundle.manifest, options=options)
    except ModelkitError:
        raise
    except Exception as exc:
        # The manifest passed validation but the adapter could not use it (or its bytes):
        # report it as a bad bundle rather than the deserializer's own traceback.
        raise BundleError(
            f"The {adapter.name} adapter cannot load {bundle.label!r}: {type(exc).__name__}: {exc}",
            path=bundle.label,
        ) from exc


def run_reference_cases(
    path: Any,
    *,
    sha256: str | None = None,
    max_bundle_size: int | None = DEFAULT_MAX_BUNDLE_SIZE,
    adapter_options: Mapping[str, Any] | None = None,
    trusted_types: Sequence[str] | None = None,
) -> tuple[Manifest, _reference.Verdict] | None:
    """Verify and load a bundle, run its reference cases, and return the manifest and their
    verdict without acting on it, or ``None`` when it keeps none (a bare model file among
    them): for ``modelkit verify --run``. The library versions are checked as ``load`` checks
    them by default, before anything is deserialized.

    Raises:
        BundleError: the bundle or its cases are malformed, or it cannot be loaded.
        IntegrityError: it fails verification, or its digest is not ``sha256``.
        EnvironmentMismatchError: a recorded library is missing or has another major version.
    """
    pinned = None if sha256 is None else normalize_digest(sha256)
    opened = open_bundle(path, sha256=pinned, max_bundle_size=max_bundle_size)
    if opened.bundle is None:
        return None
    bundle = opened.bundle
    manifest = bundle.manifest
    _environment.check(
        manifest.environment,
        "warn",
        label=opened.label,
        compare_python=_environment.depends_on_python(manifest.format),
    )
    cases = _reference.read(bundle.artifacts, manifest)
    if cases is None:
        return None
    runner = _runner(bundle, dict(adapter_options or {}), type_names(trusted_types))
    return manifest, _reference.run(cases, runner)


def _load_bare(
    kind: str, label: str, data: bytes, found: str, options: Mapping[str, Any]
) -> tuple[Runner, Manifest]:
    """Load a bare model file, described by an in-memory manifest like a bundle's."""
    runner: Any
    if kind == "onnx":
        from .adapters._onnx import OnnxAdapter, OnnxRunner, make_session

        adapters.check_options(OnnxAdapter(), options)
        session = make_session(data, options, label=label)
        manifest = describe_bare_onnx(label, data, found)
        runner = OnnxRunner(
            session,
            manifest.signature,
            layout=str(manifest.adapter["layout"]),
            rebuild=functools.partial(make_session, data, options, label=label),
        )
    else:
        from .adapters._joblib import JoblibAdapter, JoblibRunner

        adapters.check_options(JoblibAdapter(), options)
        estimator, signature, details = JoblibAdapter().load_trusted_pickle(data)
        runner = JoblibRunner(
            estimator, signature, layout=str(details["layout"]), dtype=str(details["dtype"])
        )
        manifest = _bare_manifest(
            "joblib", label, data, found, signature=signature, details=details
        )
    return runner, manifest


def describe_bare_onnx(label: str, data: bytes, found: str) -> Manifest:
    """The in-memory manifest of a bare ``.onnx`` file, read without running the graph.

    ``modelkit inspect`` and ``schema`` describe a file with it: building an onnxruntime
    session optimizes the graph, which for a hostile graph of a few hundred bytes can allocate
    gigabytes.
    """
    from .adapters._onnx import describe_graph

    saved = describe_graph(data, label=label)
    return _bare_manifest(
        "onnx", label, data, found, signature=saved.signature, details=dict(saved.details)
    )


def _bare_manifest(
    fmt: str,
    label: str,
    data: bytes,
    found: str,
    *,
    signature: Signature,
    details: dict[str, Any],
) -> Manifest:
    return Manifest(
        name=re.sub(r"[^A-Za-z0-9._-]", "_", Path(label).stem)[:200] or "model",
        version="unversioned",
        format=fmt,
        task=signature.outputs.task,
        signature=signature,
        artifacts=(
            Artifact(
                path=f"{ARTIFACTS_DIR}/model.{fmt}",
                sha256=found.removeprefix("sha256:"),
                size=len(data),
            ),
        ),
        environment=_environment.capture([]),
        created_at=now(),
        adapter=details,
    )
