"""Real tables that installed packages ship, loaded without network.

Each table is a raw DataFrame as its package gives it (integer, boolean and string dtypes and
missing values kept), a target and a task. Where a change is made, it is one a user reading the
codebook would make, and the table below says so.

=============== ===== ===== ========================= =====================================
table           from  rows  target (task)             what it brings
=============== ===== ===== ========================= =====================================
penguins        pp    344   species (class.)          NaN numbers, strings with gaps, int
cars            vega  406   Origin (class.)           NaN numbers, ints, a 311-value string;
                                                      Year, 1 January of the model year, read
                                                      as the year (int32, as pandas gives it)
airports        vega  3000  latitude (regr.)          strings with gaps (iata, name and city,
                                                      identifiers, dropped)
barley          vega  120   yield (regr.)             category columns (R factors), int year
seattle_weather vega  1461  weather (class.)          a datetime column the pipeline drops
la_riots        vega  63    type (class.)             NaN age, strings (names, address and
                                                      death date dropped)
us_employment   vega  120   nonfarm_change (regr.)    ints, a string per row (month)
driving         vega  55    gas (regr.)               ints, a string column
burtin          vega  16    Gram_Staining (class.)    3 numbers, 2 strings (one per row), 16 rows
wheat           vega  52    wheat (regr.)             NaN wages, int year
anes96          sm    944   vote (class.)             float labels 0.0/1.0 as shipped
fair            sm    3000  affairs > 0 (class.)      bool labels
grunfeld        sm    220   invest (regr.)            a string column (firm)
modechoice      sm    840   choice, as int (class.)   integer-valued floats
randhie         sm    3000  mdvis (regr.)             int columns, 0/1 int indicators
star98          sm    303   NABOVE (regr.)            20 numbers (NBELOW, which leaks, dropped)
spector         sm    32    GRADE, as int (class.)    PSI, a 0/1 float, read as bool
ccard           sm    72    AVGEXP (regr.)            OWNRENT, a 0/1 float, read as bool
cpunish         sm    17    EXECUTIONS (regr.)        SOUTH, a 0/1 float, read as bool
heart           sm    69    survival (regr.)          censors, a 0/1 float, read as bool
fertility       sm    202   2011 (regr.)              1,500 NaN; 2012 and 2013 all missing;
                                                      identifier and constant strings
breast_cancer   sk    569   target (class.)           30 numbers, int labels
wine            sk    178   target (class.)           three int labels
diabetes        sk    442   target (regr.)            numbers only
=============== ===== ===== ========================= =====================================

From: pp ``palmerpenguins``, vega ``vega_datasets.local_data``, sm ``statsmodels.datasets``
(``load_pandas``), sk ``sklearn.datasets`` (``load_*``). Airports, fair and randhie have more rows:
rows past :data:`MAX_ROWS` are sampled away (with a fixed seed) to keep the suite fast.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np

MAX_ROWS = 3000

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class RealTable:
    """One real table: the raw features, the target and the task."""

    name: str
    X: Any
    y: Any
    task: Task


_LOADERS: dict[str, Callable[[], tuple[Any, Any, Task]]] = {}


def _table(name: str) -> Callable[[Callable[[], tuple[Any, Any, Task]]], Any]:
    def register(loader: Callable[[], tuple[Any, Any, Task]]) -> Any:
        _LOADERS[name] = loader
        return loader

    return register


def _vega(name: str) -> Any:
    from vega_datasets import local_data

    return local_data(name)


def _statsmodels(name: str) -> Any:
    import importlib

    return importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data


def _split(frame: Any, target: str, task: Task, *, drop: tuple[str, ...] = ()) -> Any:
    return frame.drop(columns=[target, *drop]), frame[target], task


@_table("penguins")
def _penguins() -> tuple[Any, Any, Task]:
    from palmerpenguins import load_penguins

    return _split(load_penguins(), "species", "classification")


@_table("cars")
def _cars() -> tuple[Any, Any, Task]:
    frame = _vega("cars")
    frame["Year"] = frame["Year"].dt.year
    return _split(frame, "Origin", "classification")


@_table("airports")
def _airports() -> tuple[Any, Any, Task]:
    return _split(_vega("airports"), "latitude", "regression", drop=("iata", "name", "city"))


@_table("barley")
def _barley() -> tuple[Any, Any, Task]:
    frame = _vega("barley")
    frame[["variety", "site"]] = frame[["variety", "site"]].astype("category")
    return _split(frame, "yield", "regression")


@_table("seattle_weather")
def _seattle_weather() -> tuple[Any, Any, Task]:
    return _split(_vega("seattle-weather"), "weather", "classification")


@_table("la_riots")
def _la_riots() -> tuple[Any, Any, Task]:
    drop = ("first_name", "last_name", "address", "death_date")
    return _split(_vega("la-riots"), "type", "classification", drop=drop)


@_table("us_employment")
def _us_employment() -> tuple[Any, Any, Task]:
    return _split(_vega("us-employment"), "nonfarm_change", "regression")


@_table("driving")
def _driving() -> tuple[Any, Any, Task]:
    return _split(_vega("driving"), "gas", "regression")


@_table("burtin")
def _burtin() -> tuple[Any, Any, Task]:
    return _split(_vega("burtin"), "Gram_Staining", "classification")


@_table("wheat")
def _wheat() -> tuple[Any, Any, Task]:
    return _split(_vega("wheat"), "wheat", "regression")


@_table("anes96")
def _anes96() -> tuple[Any, Any, Task]:
    return _split(_statsmodels("anes96"), "vote", "classification")


@_table("fair")
def _fair() -> tuple[Any, Any, Task]:
    frame = _statsmodels("fair")
    frame["had_affair"] = frame.pop("affairs") > 0
    return _split(frame, "had_affair", "classification")


@_table("grunfeld")
def _grunfeld() -> tuple[Any, Any, Task]:
    return _split(_statsmodels("grunfeld"), "invest", "regression")


@_table("modechoice")
def _modechoice() -> tuple[Any, Any, Task]:
    frame = _statsmodels("modechoice")
    frame["choice"] = frame["choice"].astype(np.int64)
    return _split(frame, "choice", "classification")


@_table("randhie")
def _randhie() -> tuple[Any, Any, Task]:
    return _split(_statsmodels("randhie"), "mdvis", "regression")


@_table("star98")
def _star98() -> tuple[Any, Any, Task]:
    return _split(_statsmodels("star98"), "NABOVE", "regression", drop=("NBELOW",))


def _indicator_as_bool(frame: Any, column: str) -> Any:
    frame[column] = frame[column].astype(bool)
    return frame


@_table("spector")
def _spector() -> tuple[Any, Any, Task]:
    frame = _indicator_as_bool(_statsmodels("spector"), "PSI")
    frame["GRADE"] = frame["GRADE"].astype(np.int64)
    return _split(frame, "GRADE", "classification")


@_table("ccard")
def _ccard() -> tuple[Any, Any, Task]:
    return _split(_indicator_as_bool(_statsmodels("ccard"), "OWNRENT"), "AVGEXP", "regression")


@_table("cpunish")
def _cpunish() -> tuple[Any, Any, Task]:
    return _split(_indicator_as_bool(_statsmodels("cpunish"), "SOUTH"), "EXECUTIONS", "regression")


@_table("heart")
def _heart() -> tuple[Any, Any, Task]:
    return _split(_indicator_as_bool(_statsmodels("heart"), "censors"), "survival", "regression")


@_table("fertility")
def _fertility() -> tuple[Any, Any, Task]:
    frame = _statsmodels("fertility")
    frame = frame[frame["2011"].notna()]
    return _split(frame, "2011", "regression")


def _scikit_learn(loader: str, task: Task) -> tuple[Any, Any, Task]:
    import sklearn.datasets

    X, y = getattr(sklearn.datasets, loader)(return_X_y=True, as_frame=True)
    return X, y, task


@_table("breast_cancer")
def _breast_cancer() -> tuple[Any, Any, Task]:
    return _scikit_learn("load_breast_cancer", "classification")


@_table("wine")
def _wine() -> tuple[Any, Any, Task]:
    return _scikit_learn("load_wine", "classification")


@_table("diabetes")
def _diabetes() -> tuple[Any, Any, Task]:
    return _scikit_learn("load_diabetes", "regression")


NAMES: tuple[str, ...] = tuple(_LOADERS)
"""Every table's name, in the order of the docstring's table."""


@cache
def load(name: str) -> RealTable:
    """The table ``name``, at most :data:`MAX_ROWS` rows, with a fresh 0..n-1 index."""
    with warnings.catch_warnings():
        # The packages read their files with arguments pandas 3 deprecates: not what is tested.
        warnings.simplefilter("ignore")
        X, y, task = _LOADERS[name]()
    if len(X) > MAX_ROWS:
        keep = np.sort(np.random.default_rng(0).choice(len(X), MAX_ROWS, replace=False))
        X, y = X.iloc[keep], y.iloc[keep]
    return RealTable(name, X.reset_index(drop=True), y.reset_index(drop=True), task)
