"""Every code example in docs/ and the README runs, and prints what the page shows.

Sybil reads each page, and its examples run in order in one namespace per page:

- ```python and ```pycon blocks that start with ``>>>`` are doctests: what they print is checked,
  with ``ELLIPSIS``, ``NORMALIZE_WHITESPACE`` and Sybil's ``NUMBER`` (a number matches to the
  precision the page writes it with, so ``0.98`` stands for ``0.9816...``);
- other ```python blocks run as scripts, and may ``await`` at top level;
- a block whose first line names a file (``# myapp/sentiment.py``, ``# models.toml``) is written
  to that file instead, so that the page imports or reads exactly what it shows;
- ```toml and ```json blocks must parse; the last JSON value is ``last_json`` in the namespace,
  for a hidden ``<!-- invisible-code-block: python -->`` to compare with what modelkit wrote;
- ``<!-- skip: next "reason" -->`` skips the next block, for the reason given.

Each page runs in a fresh temporary directory, also on ``sys.path``, that holds the bundles and
files the page assumes exist (:data:`FILES`); a few pages start with names an earlier page defined,
such as ``model`` in models.md (:data:`NAMES`). What a page changes for the whole process
(adapters, global hooks, logger levels, imported modules, open models) is undone after it.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import functools
import importlib
import inspect
import json
import logging
import re
import shutil
import sys
import unittest
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Example, Sybil
from sybil.evaluators.doctest import NUMBER
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

import modelkit
from modelkit import _hooks, adapters

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | NUMBER
# The first line of a block that is the content of a file rather than code to run.
FILE_HEADER = re.compile(r"# (?P<path>[\w.-]+(?:/[\w.-]+)*\.(?:py|toml))\n")


# -- evaluating blocks ---------------------------------------------------------------------------


def _write_file(example: Example, path: str) -> None:
    target = Path.cwd() / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".py":  # `myapp/sentiment.py` lives in a package, as in an application
        for parent in Path(path).parents:
            if parent != Path():
                (parent / "__init__.py").touch()
    target.write_text(str(example.parsed), encoding="utf-8")
    importlib.invalidate_caches()


def run_python(example: Example) -> None:
    """Run a block as a script (top-level ``await`` included), or write it to the file it names."""
    source = str(example.parsed)
    code = compile(
        pad(source, example.line + example.parsed.line_offset),
        example.path,
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    header = FILE_HEADER.match(source)
    if header:
        _write_file(example, header["path"])  # compiled above all the same: it must be Python
    elif code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, example.namespace))  # the block awaits, so this is a coroutine
    else:
        exec(code, example.namespace)
    example.namespace.pop("__builtins__", None)


def check_toml(example: Example) -> None:
    source = str(example.parsed)
    tomllib.loads(source)
    header = FILE_HEADER.match(source)
    if header:
        _write_file(example, header["path"])


def check_json(example: Example) -> None:
    example.namespace["last_json"] = json.loads(str(example.parsed))


class PythonParser(PythonCodeBlockParser):
    """Blocks of ``language``: doctests when they start with ``>>>``, else :func:`run_python`."""

    def __init__(self, language: str) -> None:
        super().__init__(doctest_optionflags=DOCTEST_FLAGS)
        self.codeblock_parser = CodeBlockParser(language, run_python)


SYBIL = Sybil(
    parsers=[
        PythonParser("python"),
        PythonParser("pycon"),
        CodeBlockParser("toml", check_toml),
        CodeBlockParser("json", check_json),
        SkipParser(),
    ],
    patterns=["*.md"],
)


# -- what the pages assume -----------------------------------------------------------------------


def _iris_frame() -> tuple[Any, Any]:
    """Iris as getting-started.md prepares it: short column names, species names as labels."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    X = iris.data.rename(columns=lambda c: c.removesuffix(" (cm)").replace(" ", "_"))
    y = iris.target.map(dict(enumerate(iris.target_names)))
    return X, y


def iris_bundle(path: str) -> None:
    """The bundle getting-started.md saves: a random forest on iris."""
    from sklearn.ensemble import RandomForestClassifier

    X, y = _iris_frame()
    classifier = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    metadata = {"dataset": "sklearn.datasets.load_iris"}
    modelkit.save(
        classifier, path, name="iris", version="1.0.0", sample_input=X.head(), metadata=metadata
    )


def saved_with(path: str, package: str, version: str) -> None:
    """Make a bundle's manifest say it was saved with another version of ``package``."""
    manifest_path = Path(path) / "modelkit.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["environment"]["packages"][package] = version  # not hashed: the bundle still verifies
    manifest_path.write_text(json.dumps(manifest))


def _iris_forest_graph(X: Any, y: Any) -> Any:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    X = np.asarray(X, dtype=np.float32)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    return to_onnx(forest, X[:1], options={"zipmap": False}, target_opset=17)


def iris_onnx(path: str) -> None:
    """A bare ``.onnx`` file: a random forest converted by skl2onnx, one input ``X``."""
    from sklearn.datasets import load_iris

    graph = _iris_forest_graph(*load_iris(return_X_y=True))
    Path(path).write_bytes(graph.SerializeToString())


def iris_onnx_bundle(path: str) -> None:
    """An ONNX bundle with a tabular signature."""
    X, y = _iris_frame()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    graph = _iris_forest_graph(X, y)
    modelkit.save(graph, path, name="iris", version="2.0.0", sample_input=X.head())


def fixed_shape_onnx(path: str) -> None:
    """A graph whose input ``image`` is float32[1, 3]: no batch axis."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["activation"])],
        "fixed",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("activation", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    Path(path).write_bytes(model.SerializeToString())


def _churn_frame() -> tuple[Any, Any]:
    """300 customers: ``tenure`` (integer) and ``plan`` (string); churned (1) or not (0)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    tenure = rng.integers(1, 72, 300)
    plan = rng.choice(["basic", "pro", "team"], 300)
    churned = ((tenure < 12) & (plan != "team")) | (rng.random(300) < 0.1)
    return pd.DataFrame({"tenure": tenure, "plan": plan}), churned.astype(int)


def _churn_pipeline() -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = _churn_frame()
    return make_pipeline(
        make_column_transformer(
            (StandardScaler(), ["tenure"]), (OneHotEncoder(handle_unknown="ignore"), ["plan"])
        ),
        LogisticRegression(),
    ).fit(X, y)


def churn_bundle(path: str, version: str = "1.4.0") -> None:
    """A churn classifier that takes records such as ``{"tenure": 12, "plan": "pro"}``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    X, _ = _churn_frame()
    modelkit.save(_churn_pipeline(), path, name="churn", version=version, sample_input=X)


def text_file(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")


def copy_example(source: str, target: str) -> None:
    shutil.copytree(ROOT / "examples" / source, target)


def _iris_request_frame() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "sepal_length": [5.1, 5.9, 6.3],
            "sepal_width": [3.5, 3.0, 3.3],
            "petal_length": [1.4, 4.2, 6.0],
            "petal_width": [0.2, 1.5, 2.5],
        }
    )


_ = functools.partial
#: The files each page assumes exist, made in its working directory before its first block.
FILES: dict[str, list[Callable[[], None]]] = {
    "index.md": [_(iris_bundle, "models/iris")],
    "getting-started.md": [
        _(text_file, "myapp/__init__.py", ""),
        _(iris_bundle, "myapp/models/iris"),
    ],
    "models.md": [_(iris_bundle, "iris"), _(iris_onnx, "iris.onnx")],
    "signatures.md": [
        _(iris_bundle, "iris"),
        _(iris_onnx, "iris.onnx"),
        _(fixed_shape_onnx, "fixed.onnx"),
    ],
    "adapters.md": [_(iris_onnx_bundle, "models/iris-onnx")],
    "bundle-format.md": [_(iris_bundle, "iris")],
    "security.md": [
        _(iris_bundle, "models/iris"),
        _(iris_bundle, "models/iris-2021"),
        _(saved_with, "models/iris-2021", "scikit-learn", "0.24.2"),
    ],
    "registry.md": [
        _(churn_bundle, "bundles/churn-1.4.0"),
        _(churn_bundle, "bundles/churn-1.5.0", "1.5.0"),
        _(churn_bundle, "bundles/churn-1.6.0", "1.6.0"),
        _(churn_bundle, "bundles/churn-onnx"),
        _(churn_bundle, "bundles/risk-2.0.0", "2.0.0"),
    ],
    "batching.md": [_(churn_bundle, "models/churn")],
    "observability.md": [_(churn_bundle, "models/churn")],
    "prometheus.md": [_(churn_bundle, "models/churn")],
    "flask.md": [_(churn_bundle, "bundles/churn")],
    "fastapi.md": [_(churn_bundle, "bundles/churn")],
    "shipping.md": [
        _(churn_bundle, "bundles/churn"),
        _(text_file, "models.toml", '[models.churn]\npath = "bundles/churn"\n'),
        _(copy_example, "packaged_model/churn_app", "churn_app"),
    ],
}
#: Names a page uses as an earlier page left them (or as a notebook would have them).
NAMES: dict[str, dict[str, Callable[[], Any]]] = {
    "models.md": {
        "modelkit": lambda: modelkit,
        "model": lambda: modelkit.load("iris"),
        "frame": _iris_request_frame,
    },
    "observability.md": {
        "X_train": lambda: _churn_frame()[0],
        "pipeline": _churn_pipeline,
    },
}


# -- the test ------------------------------------------------------------------------------------


def _pages() -> Iterator[Path]:
    yield ROOT / "README.md"
    yield from sorted((ROOT / "docs").glob("*.md"))


def _loggers() -> dict[str, logging.Logger]:
    return {
        name: logger
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory on ``sys.path``; process-wide state restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(adapters, "_registry", dict(adapters._registry))
    monkeypatch.setattr(_hooks.GLOBAL_HOOKS, "hooks", _hooks.GLOBAL_HOOKS.hooks)
    levels = {name: logger.level for name, logger in _loggers().items()}
    modules = set(sys.modules)
    yield tmp_path
    for name, logger in _loggers().items():
        logger.setLevel(levels.get(name, logging.NOTSET))
    for name in set(sys.modules) - modules:
        module = sys.modules[name]
        location = getattr(module, "__file__", None) or next(
            iter(getattr(module, "__path__", [])), ""
        )
        if location and Path(location).is_relative_to(tmp_path):
            del sys.modules[name]


def _close(namespace: dict[str, Any]) -> None:
    for value in namespace.values():
        if isinstance(value, modelkit.Model | modelkit.Registry | modelkit.PredictionLogger):
            value.close()


@pytest.mark.parametrize("page", list(_pages()), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_examples_print_what_the_page_shows(page: Path, isolated: Path) -> None:
    document = SYBIL.parse(page)
    for build in FILES.get(page.name, []):
        build()
    for name, make in NAMES.get(page.name, {}).items():
        document.namespace[name] = make()
    try:
        for example in document:
            try:
                example.evaluate()
            except unittest.SkipTest:
                continue  # the page gives the reason, in its skip directive
    finally:
        _close(document.namespace)
