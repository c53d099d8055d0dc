"""An iris scoring API on FastAPI, with the ONNX bundle shipped next to it.

- ``GET /models``, ``GET /models/iris``, ``POST /models/iris/predict``: modelkit's JSON API;
  ``/docs`` shows each model's input and output schemas.
- ``POST /species``: a route of the app's own, with a typed body, that awaits the same model.
- ``GET /healthz``: a readiness check that predicts.

Run it from the repository root::

    uvicorn --factory --app-dir examples/fastapi_app app:create_app
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

import modelkit
import modelkit.fastapi

HERE = Path(__file__).resolve().parent
EXAMPLE = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}


class Flower(BaseModel):
    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float


class Species(BaseModel):
    species: str
    probability: float


def create_app() -> FastAPI:
    """The application factory (``uvicorn --factory`` calls it)."""
    # Loaded and verified now: the bundle must have the digest train.py pinned in models.lock.
    registry = modelkit.Registry.from_config(HERE / "models.toml", lock=HERE / "models.lock")
    app = FastAPI(title="Iris scoring")
    # The router's lifespan closes the registry when the server stops.
    app.include_router(
        modelkit.fastapi.router(
            registry,
            max_batch_size=100,  # {"instances": [...]} of more records get 413
            max_body_size=64 * 1024,  # larger request bodies get 413, unread
        )
    )

    @app.post("/species")
    async def species(flower: Flower) -> Species:
        output = await registry["iris"].apredict(flower.model_dump())
        return Species(species=output.label, probability=output.probabilities[output.label])

    @app.get("/healthz")
    async def health() -> dict[str, object]:
        await registry["iris"].apredict(EXAMPLE)  # ready means able to answer, not only started
        return {"status": "ok", "models": {name: registry[name].version for name in registry}}

    return app
