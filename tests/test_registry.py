"""The registry: routes, canary, shadow, hot reload, lock files and config, on real bundles.

Constant-output ``DummyClassifier`` bundles make the variant that served each call visible:
bundle ``a`` always says ``"a"``, bundle ``b`` always says ``"b"``.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit import _registry, _shadow

from .bundle_fixtures import ARTIFACT, replace_artifact
from .otel import Otel

RECORD = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}


def _constant(directory: Path, label: str, version: str, iris: tuple[Any, Any]) -> Path:
    from sklearn.dummy import DummyClassifier

    X, _ = iris
    y = ["a", "b"] * (len(X) // 2)
    model = DummyClassifier(strategy="constant", constant=label).fit(X, y)
    path = directory / f"{label}-{version}"
    modelkit.save(model, path, name="churn", version=version, sample_input=X.head(50))
    return path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, iris: tuple[Any, Any]) -> dict[str, Path]:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    directory = tmp_path_factory.mktemp("registry")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    other = directory / "regressor"
    modelkit.save(
        LinearRegression().fit(X, y), other, name="dia", version="1", sample_input=X.head(20)
    )
    return {
        "a": _constant(directory, "a", "1.0.0", iris),
        "b": _constant(directory, "b", "2.0.0", iris),
        "regressor": other,
    }


@pytest.fixture
def registry() -> Any:
    with modelkit.Registry() as registry:
        yield registry


def _labels(route: Any, keys: range) -> list[str]:
    return [route.predict(RECORD, key=f"user-{k}").label for k in keys]


# -- the mapping --------------------------------------------------------------------------------


def test_registry_is_a_mapping_of_routes(registry: Any, bundles: dict[str, Path]) -> None:
    registry.add("churn", bundles["a"])
    registry.add("dia", bundles["regressor"])
    assert registry.names() == ["churn", "dia"]
    assert list(registry) == ["churn", "dia"]
    assert len(registry) == 2
    assert "churn" in registry
    assert "nope" not in registry
    route = registry["churn"]
    assert (route.name, route.version) == ("churn", "1.0.0")
    assert route.digest == modelkit.digest(bundles["a"])
    assert route.signature.names == tuple(RECORD)
    assert route.predict(RECORD).label == "a"
    assert [p.label for p in route.predict_batch([RECORD, RECORD])] == ["a", "a"]


def test_unknown_name_suggests_the_near_miss(registry: Any, bundles: dict[str, Path]) -> None:
    registry.add("churn", bundles["a"])
    with pytest.raises(KeyError, match="Did you mean 'churn'"):
        registry["chrun"]


def test_a_name_is_added_once(registry: Any, bundles: dict[str, Path]) -> None:
    registry.add("churn", bundles["a"])
    with pytest.raises(ValueError, match="already in the registry"):
        registry.add("churn", bundles["b"])
    with pytest.raises(ValueError, match="name"):
        registry.add("no spaces", bundles["b"])


def test_unknown_load_option_is_refused(registry: Any, bundles: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"models\.churn: unknown load option\(s\) \['shaa256'\]"):
        registry.add("churn", bundles["a"], shaa256="x")


# -- canary -------------------------------------------------------------------------------------


def test_route_obtained_earlier_follows_canary_promotion_and_reload(
    registry: Any, bundles: dict[str, Path]
) -> None:
    route = registry.add("churn", bundles["a"])
    registry.set_canary("churn", bundles["b"], weight=1.0)
    assert route.predict(RECORD).label == "b"
    registry.set_canary("churn", bundles["b"], weight=0.0)
    assert route.predict(RECORD).label == "a"
    registry.promote("churn")
    assert route.predict(RECORD).label == "b"
    assert route.version == "2.0.0"
    registry.reload("churn", bundles["a"])
    assert route.predict(RECORD).label == "a"


def test_keyed_routing_is_sticky_and_matches_the_weight(
    registry: Any, bundles: dict[str, Path]
) -> None:
    route = registry.add("churn", bundles["a"])
    registry.set_canary("churn", bundles["b"], weight=0.2)
    keys = range(3000)
    first = _labels(route, keys)
    assert _labels(route, keys) == first  # the same key lands on the same variant
    share = first.count("b") / len(first)
    assert share == pytest.approx(0.2, abs=0.03)


def test_raising_the_weight_only_moves_keys_onto_the_canary(
    registry: Any, bundles: dict[str, Path]
) -> None:
    route = registry.add("churn", bundles["a"])
    keys = range(2000)
    registry.set_canary("churn", bundles["b"], weight=0.1)
    at_10 = {k for k, label in zip(keys, _labels(route, keys), strict=True) if label == "b"}
    registry.set_canary("churn", bundles["b"], weight=0.5)
    at_50 = {k for k, label in zip(keys, _labels(route, keys), strict=True) if label == "b"}
    assert at_10 < at_50
    assert len(at_50) / len(keys) == pytest.approx(0.5, abs=0.04)


def test_routing_without_a_key_is_weighted_random(registry: Any, bundles: dict[str, Path]) -> None:
    route = registry.add("churn", bundles["a"])
    registry.set_canary("churn", bundles["b"], weight=0.3)
    labels = [route.predict(RECORD).label for _ in range(3000)]
    assert labels.count("b") / len(labels) == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_canary_weight_outside_zero_to_one_is_refused(
    registry: Any, bundles: dict[str, Path], weight: Any
) -> None:
    registry.add("churn", bundles["a"])
    with pytest.raises(ValueError, match=r"models\.churn\.canary: weight"):
        registry.set_canary("churn", bundles["b"], weight=weight)


def test_incompatible_canary_is_refused_and_primary_keeps_serving(
    registry: Any, bundles: dict[str, Path]
) -> None:
    route = registry.add("churn", bundles["a"])
    with pytest.raises(ValueError, match=r"models\.churn: the canary bundle 'dia'.*task"):
        registry.set_canary("churn", bundles["regressor"], weight=0.5)
    assert route.predict(RECORD, key="k").label == "a"


def test_promote_without_a_canary_is_an_error(registry: Any, bundles: dict[str, Path]) -> None:
    registry.add("churn", bundles["a"])
    with pytest.raises(modelkit.ModelkitError, match="no canary"):
        registry.promote("churn")


def test_clear_canary_sends_everything_back_to_the_primary(
    registry: Any, bundles: dict[str, Path]
) -> None:
    route = registry.add("churn", bundles["a"])
    registry.set_canary("churn", bundles["b"], weight=1.0)
    registry.clear_canary("churn")
    assert set(_labels(route, range(50))) == {"a"}


# -- telemetry ----------------------------------------------------------------------------------


def test_spans_name_the_variant_and_never_the_key(bundles: dict[str, Path]) -> None:
    otel = Otel()
    with modelkit.Registry(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    ) as registry:
        route = registry.add("churn", bundles["a"])
        registry.set_canary("churn", bundles["b"], weight=0.5)
        served = {}
        for k in range(40):
            served[route.predict(RECORD, key=f"secret-user-{k}").label] = True
        spans = otel.spans("predict churn")
        variants = {span.attributes["modelkit.model.variant"] for span in spans}
        assert variants == {"primary", "canary"}
        by_variant = {
            span.attributes["modelkit.model.variant"]: span.attributes["modelkit.model.version"]
            for span in spans
        }
        assert by_variant == {"primary": "1.0.0", "canary": "2.0.0"}
        for span in spans:
            assert not any("secret-user" in str(v) for v in span.attributes.values())
        registry.promote("churn")
        otel.exporter.clear()
        route.predict(RECORD)
        assert otel.spans("predict churn")[0].attributes["modelkit.model.variant"] == "primary"


# -- shadow -------------------------------------------------------------------------------------


def test_shadow_is_compared_and_counted_without_changing_answers(
    bundles: dict[str, Path],
) -> None:
    otel = Otel()
    with modelkit.Registry(meter_provider=otel.meter_provider) as registry:
        route = registry.add("churn", bundles["a"])
        registry.set_shadow("churn", bundles["b"])
        assert [route.predict(RECORD).label for _ in range(5)] == ["a"] * 5
        assert [p.label for p in route.predict_batch([RECORD] * 3)] == ["a"] * 3
        registry._shadows.join()
        outcomes = {
            point.attributes["modelkit.shadow.outcome"]: point.value
            for _, point in otel.points("modelkit.shadow.comparisons")
        }
        assert outcomes == {"mismatch": 8}
        registry.set_shadow("churn", bundles["a"])
        route.predict(RECORD)
        registry._shadows.join()
        counts = registry._shadows.counts
        assert (counts["match"], counts["mismatch"]) == (1, 8)


def test_failing_shadow_counts_an_error_and_the_caller_never_sees_it(
    registry: Any, bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    route = registry.add("churn", bundles["a"])
    registry.set_shadow("churn", bundles["b"])
    shadow = registry._entry("churn").state.shadow.model

    def broken(record: Any) -> Any:
        raise RuntimeError("shadow bug")

    monkeypatch.setattr(shadow, "predict", broken)
    assert route.predict(RECORD).label == "a"
    registry._shadows.join()
    assert registry._shadows.counts["error"] == 1


def test_shadow_drops_when_its_queue_is_full(
    bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_shadow, "SHADOW_QUEUE_SIZE", 2)
    release = threading.Event()
    original = _shadow.ShadowTraffic.compare

    def held(self: Any, *args: Any) -> None:
        release.wait(10)
        original(self, *args)

    monkeypatch.setattr(_shadow.ShadowTraffic, "compare", held)
    with modelkit.Registry() as registry:
        route = registry.add("churn", bundles["a"])
        registry.set_shadow("churn", bundles["b"])
        answers = [route.predict(RECORD).label for _ in range(10)]
        assert answers == ["a"] * 10
        release.set()
        registry._shadows.join()
        counts = registry._shadows.counts
        assert counts["dropped"] >= 7  # one in the worker's hands, two queued
        assert counts["dropped"] + counts["mismatch"] == 10


def test_incompatible_shadow_is_refused(registry: Any, bundles: dict[str, Path]) -> None:
    registry.add("churn", bundles["a"])
    with pytest.raises(ValueError, match="shadow bundle"):
        registry.set_shadow("churn", bundles["regressor"])


# -- hot reload ---------------------------------------------------------------------------------


def test_reload_picks_up_a_bundle_replaced_in_place(
    registry: Any, bundles: dict[str, Path], tmp_path: Path
) -> None:
    live = Path(shutil.copytree(bundles["a"], tmp_path / "live"))
    route = registry.add("churn", live)
    shutil.rmtree(live)
    shutil.copytree(bundles["b"], live)
    assert route.predict(RECORD).label == "a"  # nothing changes until asked
    registry.reload("churn")
    assert route.predict(RECORD).label == "b"


@pytest.mark.parametrize("problem", ["missing", "tampered", "incompatible"])
def test_failed_reload_raises_and_the_old_model_keeps_serving(
    registry: Any, bundles: dict[str, Path], tmp_path: Path, problem: str
) -> None:
    route = registry.add("churn", bundles["a"])
    target = tmp_path / "next"
    if problem == "tampered":
        shutil.copytree(bundles["b"], target)
        artifact = target / "artifacts" / "model.joblib"
        artifact.write_bytes(artifact.read_bytes()[:-1] + b"\x00")
        expected: type[Exception] = modelkit.IntegrityError
    elif problem == "incompatible":
        target = bundles["regressor"]
        expected = ValueError
    else:
        expected = modelkit.BundleError
    with pytest.raises(expected, match=r"models\.churn"):
        registry.reload("churn", target)
    assert route.predict(RECORD).label == "a"
    assert route.version == "1.0.0"


def _answering_otherwise(bundles: dict[str, Path], target: Path) -> Path:
    """Bundle ``a`` (its reference cases answered ``"a"``) with ``b``'s model inside, the
    manifest re-hashed: a consistent bundle that no longer answers its cases."""
    shutil.copytree(bundles["a"], target)
    model = (bundles["b"] / ARTIFACT).read_bytes()
    replace_artifact(target, model, rehash=True)
    return target


def test_reload_to_a_version_that_fails_its_reference_cases_keeps_the_old_one(
    registry: Any, bundles: dict[str, Path], tmp_path: Path
) -> None:
    route = registry.add("churn", bundles["a"])
    changed = _answering_otherwise(bundles, tmp_path / "changed")
    with pytest.raises(modelkit.ReproducibilityError, match=r"^models\.churn: ") as caught:
        registry.reload("churn", changed)
    assert caught.value.rows
    assert route.predict(RECORD).label == "a"
    assert route.version == "1.0.0"


def test_reload_follows_the_route_check_policy(
    registry: Any, bundles: dict[str, Path], tmp_path: Path
) -> None:
    route = registry.add("churn", bundles["a"], check="warn")
    changed = _answering_otherwise(bundles, tmp_path / "changed")
    with pytest.warns(modelkit.ReproducibilityWarning):
        registry.reload("churn", changed)
    assert route.predict(RECORD).label == "b"  # the route's owner said so


def test_reloads_under_load_fail_no_call(registry: Any, bundles: dict[str, Path]) -> None:
    route = registry.add("churn", bundles["a"])
    stop = threading.Event()
    failures: list[BaseException] = []
    answers: set[str] = set()
    calls = [0]

    def client(index: int) -> None:
        while not stop.is_set():
            try:
                if index % 2:
                    answers.add(route.predict(RECORD, key=index).label)
                else:
                    answers.update(p.label for p in route.predict_batch([RECORD] * 4))
                calls[0] += 1
            except BaseException as exc:  # noqa: BLE001 - every failure is the test's finding
                failures.append(exc)

    async def async_client() -> None:
        while not stop.is_set():
            try:
                answers.add((await route.apredict(RECORD)).label)
            except BaseException as exc:  # noqa: BLE001
                failures.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=lambda: asyncio.run(async_client())))
    for thread in threads:
        thread.start()
    reloads = 0
    deadline = time.monotonic() + 3.0
    try:
        while time.monotonic() < deadline:
            registry.reload("churn", bundles["b" if reloads % 2 == 0 else "a"])
            reloads += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert reloads >= 5
    assert calls[0] > reloads
    assert answers == {"a", "b"}


def test_reloads_of_one_name_are_serialised(
    registry: Any, bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.add("churn", bundles["a"])
    inside = []
    overlap = []
    real_load = _registry.load

    def tracked(*args: Any, **kwargs: Any) -> Any:
        inside.append(1)
        if len(inside) > 1:
            overlap.append(1)
        try:
            time.sleep(0.05)
            return real_load(*args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(_registry, "load", tracked)
    threads = [
        threading.Thread(target=registry.reload, args=("churn", bundles["ab"[i % 2]]))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlap == []


def test_async_callers_are_served_while_a_reload_loads(
    registry: Any, bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    route = registry.add("churn", bundles["a"])
    loading = threading.Event()
    release = threading.Event()
    real_load = _registry.load

    def slow(*args: Any, **kwargs: Any) -> Any:
        loading.set()
        release.wait(10)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(_registry, "load", slow)
    reloader = threading.Thread(target=registry.reload, args=("churn", bundles["b"]))
    reloader.start()
    assert loading.wait(10)

    async def many() -> list[str]:
        outputs = await asyncio.gather(*(route.apredict(RECORD) for _ in range(20)))
        return [o.label for o in outputs]

    try:
        assert asyncio.run(many()) == ["a"] * 20  # served while the reload is still loading
        assert reloader.is_alive()
    finally:
        release.set()
        reloader.join()
    assert route.predict(RECORD).label == "b"


# -- lock files and config ------------------------------------------------------------------------


def _config(tmp_path: Path, bundles: dict[str, Path], extra: str = "") -> Path:
    for label in ("a", "b"):
        target = tmp_path / "bundles" / label
        if not target.exists():
            shutil.copytree(bundles[label], target)
    config = tmp_path / "models.toml"
    config.write_text(
        '[models.churn]\npath = "bundles/a"\n\n'
        '[models.churn.canary]\npath = "bundles/b"\nweight = 0.25\n\n'
        '[models.churn.shadow]\npath = "bundles/b"\n' + extra
    )
    return config


def test_from_config_reads_paths_relative_to_the_file(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    with modelkit.Registry.from_config(_config(tmp_path, bundles)) as registry:
        route = registry["churn"]
        assert route.version == "1.0.0"
        share = _labels(route, range(2000)).count("b") / 2000
        assert share == pytest.approx(0.25, abs=0.04)
        state = registry._entry("churn").state
        assert state.shadow is not None


def test_lock_round_trips_and_pins_every_bundle(tmp_path: Path, bundles: dict[str, Path]) -> None:
    config = _config(tmp_path, bundles)
    with modelkit.Registry.from_config(config) as registry:
        lock = registry.lock()
        registry.write_lock(tmp_path / "models.lock")
    digest_a = modelkit.digest(tmp_path / "bundles" / "a")
    digest_b = modelkit.digest(tmp_path / "bundles" / "b")
    assert lock["lock_version"] == 1
    assert lock["models"]["churn"]["sha256"] == digest_a
    assert lock["models"]["churn"]["canary"]["sha256"] == digest_b
    assert lock["models"]["churn"]["shadow"]["sha256"] == digest_b
    with modelkit.Registry.from_config(config, lock=tmp_path / "models.lock") as registry:
        assert registry.lock() == lock


def test_lock_refuses_a_changed_bundle_before_loading_it(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    config = _config(tmp_path, bundles)
    with modelkit.Registry.from_config(config) as registry:
        registry.write_lock(tmp_path / "models.lock")
    # Another, valid, bundle now sits at the primary's path.
    shutil.rmtree(tmp_path / "bundles" / "a")
    shutil.copytree(bundles["b"], tmp_path / "bundles" / "a")
    with pytest.raises(modelkit.IntegrityError, match=r"models\.churn: .*pinned") as info:
        modelkit.Registry.from_config(config, lock=tmp_path / "models.lock")
    assert info.value.expected == modelkit.digest(bundles["a"])


def test_lock_must_name_every_configured_bundle(tmp_path: Path, bundles: dict[str, Path]) -> None:
    config = _config(tmp_path, bundles)
    with modelkit.Registry.from_config(config) as registry:
        lock = registry.lock()
    del lock["models"]["churn"]["shadow"]
    with pytest.raises(modelkit.IntegrityError, match=r"models\.churn\.shadow is not in the lock"):
        modelkit.Registry.from_config(config, lock=lock)


def test_sha256_in_config_refuses_another_bundle(tmp_path: Path, bundles: dict[str, Path]) -> None:
    config = {"models": {"churn": {"path": str(bundles["a"]), "sha256": "sha256:" + "0" * 64}}}
    with pytest.raises(modelkit.IntegrityError, match=r"models\.churn"):
        modelkit.Registry.from_config(config)


def test_reload_of_a_locked_bundle_keeps_its_pin(tmp_path: Path, bundles: dict[str, Path]) -> None:
    config = _config(tmp_path, bundles)
    with modelkit.Registry.from_config(config) as registry:
        registry.write_lock(tmp_path / "models.lock")
    with modelkit.Registry.from_config(config, lock=tmp_path / "models.lock") as registry:
        shutil.rmtree(tmp_path / "bundles" / "a")
        shutil.copytree(bundles["b"], tmp_path / "bundles" / "a")
        with pytest.raises(modelkit.IntegrityError):
            registry.reload("churn")
        assert registry["churn"].version == "1.0.0"
        with pytest.raises(modelkit.IntegrityError):
            registry.reload("churn", tmp_path / "bundles" / "a")  # the same path, spelled out
        with pytest.raises(modelkit.IntegrityError):
            registry.reload("churn", bundles["b"])  # another path is no way around the pin
        assert registry["churn"].version == "1.0.0"
        registry.reload("churn", bundles["b"], sha256=modelkit.digest(bundles["b"]))
        assert registry["churn"].version == "2.0.0"


@pytest.mark.parametrize(
    "spelled", ["implicit", "same path", "another spelling", "the locked digest again"]
)
def test_a_bundle_tampered_in_place_is_never_unpickled_by_a_reload(
    tmp_path: Path, bundles: dict[str, Path], spelled: str
) -> None:
    from tests.bundle_fixtures import malicious_pickle, replace_artifact

    config = _config(tmp_path, bundles)
    with modelkit.Registry.from_config(config) as registry:
        registry.write_lock(tmp_path / "models.lock")
    marker = tmp_path / "pwned"
    with modelkit.Registry.from_config(config, lock=tmp_path / "models.lock") as registry:
        target = tmp_path / "bundles" / "a"
        # A careful attacker re-hashes the manifest, so the bundle is self-consistent.
        replace_artifact(target, malicious_pickle(marker), rehash=True)
        arguments: dict[str, Any] = {
            "implicit": {},
            "same path": {"path": target},
            "another spelling": {"path": tmp_path / "bundles" / "." / "a"},
            "the locked digest again": {
                "path": str(target),
                "sha256": registry.lock()["models"]["churn"]["sha256"],
            },
        }[spelled]
        with pytest.raises(modelkit.IntegrityError):
            registry.reload("churn", **arguments)
        assert registry["churn"].version == "1.0.0"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"models": {"churn": {"path": "a", "canary": {"path": "b", "wieght": 0.1}}}},
            r"models\.churn\.canary\.wieght: unknown key \(did you mean 'weight'\?\)",
        ),
        (
            {"models": {"churn": {"path": "a", "canary": {"path": "b", "weight": 1.5}}}},
            r"models\.churn\.canary\.weight",
        ),
        ({"models": {"churn": {"sha256": "x"}}}, r"models\.churn\.path: Field required"),
        ({"models": {"churn": {"path": "a", "drfit": True}}}, r"models\.churn\.drfit"),
        ({"modles": {}}, r"modles: unknown key \(did you mean 'models'\?\)"),
        ({"models": {"bad name": {"path": "a"}}}, r"'bad name'"),
    ],
)
def test_bad_config_names_the_model_and_the_key(document: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        modelkit.Registry.from_config(document)


def test_config_with_a_missing_bundle_names_the_model(tmp_path: Path) -> None:
    with pytest.raises(modelkit.BundleError, match=r"models\.churn: "):
        modelkit.Registry.from_config({"models": {"churn": {"path": str(tmp_path / "nope")}}})


def test_config_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text("[models.churn\npath = 1")
    with pytest.raises(ValueError, match="not valid TOML"):
        modelkit.Registry.from_config(config)


def test_config_load_options_reach_the_models(tmp_path: Path, bundles: dict[str, Path]) -> None:
    config = {
        "models": {
            "churn": {
                "path": str(bundles["a"]),
                "version_policy": "ignore",
                "drift": True,
                "batching": {"max_batch_size": 8},
            }
        }
    }
    with modelkit.Registry.from_config(config) as registry:
        model = registry["churn"].model
        assert model.drift() is not None
        assert model._batcher is not None
        assert registry["churn"].predict(RECORD).label == "a"


def test_config_shorthand_and_base_dir(tmp_path: Path, bundles: dict[str, Path]) -> None:
    shutil.copytree(bundles["a"], tmp_path / "a")
    config = {"models": {"churn": "a", "other": {"path": str(bundles["b"])}}}
    with modelkit.Registry.from_config(config, base_dir=tmp_path) as registry:
        assert registry["churn"].predict(RECORD).label == "a"
        assert registry["other"].predict(RECORD).label == "b"


def test_write_lock_makes_paths_relative_to_the_lock_file(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    config = _config(tmp_path, bundles)
    (tmp_path / "locks").mkdir()
    with modelkit.Registry.from_config(config) as registry:
        registry.write_lock(tmp_path / "locks" / "models.lock")
    text = (tmp_path / "locks" / "models.lock").read_text()
    assert 'path = "../bundles/a"' in text
    assert str(tmp_path) not in text


def test_shadow_sees_the_record_as_it_was_when_predicted(
    registry: Any, bundles: dict[str, Path]
) -> None:
    route = registry.add("churn", bundles["a"])
    registry.set_shadow("churn", bundles["a"])
    record = dict(RECORD)
    for _ in range(50):
        route.predict(record)
        record["petal width (cm)"] = "changed by the caller"  # would make the shadow fail
        record = dict(RECORD)
        frame_records = [dict(RECORD)]
        route.predict_batch(frame_records)
        frame_records[0].clear()
    registry._shadows.join()
    counts = registry._shadows.counts
    assert (counts["match"], counts["error"]) == (100, 0)


def test_reload_to_a_new_path_keeps_the_route_load_options(
    registry: Any, bundles: dict[str, Path]
) -> None:
    registry.add("churn", bundles["a"], batching=True, drift=True)
    registry.reload("churn", bundles["b"])
    model = registry["churn"].model
    assert model._batcher is not None
    assert model.drift() is not None


def test_reload_with_unpin_drops_the_lock_pin(tmp_path: Path, bundles: dict[str, Path]) -> None:
    config = _config(tmp_path, bundles)
    with modelkit.Registry.from_config(config) as registry:
        registry.write_lock(tmp_path / "models.lock")
    with modelkit.Registry.from_config(config, lock=tmp_path / "models.lock") as registry:
        registry.reload("churn", bundles["b"], unpin=True)
        registry.reload("churn")  # the bundle now in use, again: no stale pin refuses it
        assert registry["churn"].version == "2.0.0"
        registry.set_canary("churn", bundles["a"], weight=0.5)
        registry.promote("churn")
        registry.reload("churn")
        assert registry["churn"].version == "1.0.0"


def test_lock_file_with_any_characters_in_paths_round_trips(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    odd = tmp_path / 'bündel "😀" \\ tab\t'
    shutil.copytree(bundles["a"], odd)
    with modelkit.Registry() as registry:
        registry.add("churn", odd)
        registry.write_lock(tmp_path / "models.lock")
        lock = registry.lock()
    import tomllib

    parsed = tomllib.loads((tmp_path / "models.lock").read_text(encoding="utf-8"))
    assert parsed["models"]["churn"]["sha256"] == lock["models"]["churn"]["sha256"]
    assert (tmp_path / parsed["models"]["churn"]["path"]).resolve() == odd.resolve()


def test_write_lock_that_fails_leaves_the_previous_lock_file(
    tmp_path: Path, bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelkit import _atomic

    target = tmp_path / "models.lock"
    target.write_text("# the previous lock file\n", encoding="utf-8")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with modelkit.Registry() as registry:
        registry.add("churn", bundles["a"])
        monkeypatch.setattr(_atomic.os, "fsync", full)
        with pytest.raises(OSError, match="No space left"):
            registry.write_lock(target)
    assert target.read_text(encoding="utf-8") == "# the previous lock file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["models.lock"]
