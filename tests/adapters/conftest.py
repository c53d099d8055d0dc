"""Data the adapter tests share, made once per module."""

from __future__ import annotations

import numpy as np
import pytest

from tests.adapters import zoo


@pytest.fixture(scope="module")
def classification_data() -> tuple[np.ndarray, np.ndarray]:
    return zoo.classification_data()


@pytest.fixture(scope="module")
def regression_data() -> tuple[np.ndarray, np.ndarray]:
    return zoo.regression_data()
