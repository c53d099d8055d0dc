"""The pipelines most people write for a raw DataFrame, fitted on the real tables.

Numbers (booleans among them) are imputed with the mean and scaled; strings and categories are
imputed with the most frequent value and one-hot encoded, ignoring unknown categories; columns
are picked by dtype, so a datetime column is dropped. Then one of five models, small enough to
keep the suite fast.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

import numpy as np

from tests.real_data.tables import RealTable, load

NAMES = ("linear", "hist_gradient_boosting", "random_forest", "xgboost", "lightgbm")
"""The models that end a pipeline: LogisticRegression or Ridge, then tree ensembles."""

NUMBER_DTYPES = ["number", "bool", "boolean"]
# SimpleImputer refuses a bool column with strategy="most_frequent", but takes it as a number:
# the mean of a 0/1 column is the share of True, a fair guess for a missing flag.
STRING_DTYPES = ["object", "string", "category"]


def preprocessing(*, dense: bool = False) -> Any:
    """The ColumnTransformer: numbers imputed and scaled, strings imputed and one-hot encoded.

    Args:
        dense: give a dense matrix, for models that refuse a sparse one (HistGradientBoosting).
    """
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    strings = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=not dense)),
        ]
    )
    return ColumnTransformer(
        [
            ("numbers", numbers, make_column_selector(dtype_include=NUMBER_DTYPES)),
            ("strings", strings, make_column_selector(dtype_include=STRING_DTYPES)),
        ],
        sparse_threshold=0.0 if dense else 0.3,
    )


def final_estimator(name: str, task: str) -> Any:
    """The model called ``name`` for ``task``, with few trees."""
    is_classifier = task == "classification"
    if name == "linear":
        from sklearn.linear_model import LogisticRegression, Ridge

        return LogisticRegression(max_iter=2000) if is_classifier else Ridge()
    if name == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        booster = HistGradientBoostingClassifier if is_classifier else HistGradientBoostingRegressor
        return booster(max_iter=20, random_state=0)
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        forest = RandomForestClassifier if is_classifier else RandomForestRegressor
        return forest(n_estimators=10, max_depth=8, random_state=0)
    if name == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        xgb = XGBClassifier if is_classifier else XGBRegressor
        return xgb(n_estimators=10, max_depth=4, n_jobs=1, random_state=0)
    if name == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        lgbm = LGBMClassifier if is_classifier else LGBMRegressor
        return lgbm(n_estimators=10, num_leaves=15, n_jobs=1, random_state=0, verbose=-1)
    raise ValueError(f"unknown pipeline {name!r}; choose from {NAMES}")


def build(name: str, task: str) -> Any:
    """An unfitted ``Pipeline([("features", ...), ("model", ...)])``."""
    from sklearn.pipeline import Pipeline

    dense = name == "hist_gradient_boosting"
    return Pipeline(
        [("features", preprocessing(dense=dense)), ("model", final_estimator(name, task))]
    )


def target(table: RealTable, name: str) -> Any:
    """The target to fit on: XGBoost wants classes numbered 0..k-1, so users encode them."""
    if name == "xgboost" and table.task == "classification":
        from sklearn.preprocessing import LabelEncoder

        return LabelEncoder().fit_transform(table.y)
    return table.y


@cache
def fitted(table_name: str, name: str) -> Any:
    """Pipeline ``name`` fitted on table ``table_name`` (cached: the tests share it)."""
    table = load(table_name)
    pipeline = build(name, table.task)
    with warnings.catch_warnings():
        # Fitting is not what is tested: all-missing columns skipped by the imputer,
        # tiny tables that do not converge are fine as they are.
        warnings.simplefilter("ignore")
        pipeline.fit(table.X, target(table, name))
    return pipeline


def step_names(pipeline: Any, path: str = "") -> set[str]:
    """What a refusal may name a step by: its class (a wrapper Pipeline's is too vague), its
    name in quotes, or its path such as ``features > strings > impute``."""
    names: set[str] = set()
    if type(pipeline).__name__ != "Pipeline":
        names.add(type(pipeline).__name__)
    children = [(name, step) for name, step in getattr(pipeline, "steps", [])]
    children += [(name, step) for name, step, *_ in getattr(pipeline, "transformers_", [])]
    for name, step in children:
        if isinstance(step, str):  # "drop" and "passthrough"
            continue
        child_path = f"{path} > {name}" if path else name
        names |= {f"'{name}'", f'"{name}"'}
        if path:  # a top-level path is the bare name, a word any message may use
            names.add(child_path)
        names |= step_names(step, child_path)
    return names


def rows_for_records(X: Any, limit: int) -> list[int]:
    """Up to ``limit`` row positions, rows with a missing value first."""
    missing = X.isna().to_numpy().any(axis=1)
    order = np.concatenate([np.flatnonzero(missing), np.flatnonzero(~missing)])
    return [int(i) for i in order[:limit]]
