"""A small Flask app that scores iris flowers with the ONNX bundle shipped next to it.

- ``GET /`` and ``POST /``: a scoring page (an HTML form) that calls ``models["iris"]``.
- ``GET /models``, ``GET /models/iris``, ``POST /models/iris/predict``: modelkit's JSON API.
- ``GET /healthz``: a readiness check, with the process ids that show gunicorn ``--preload``
  at work (the app, and its models, loaded once in the master process before it forked).

Run it from the repository root::

    flask --app examples/flask_app/app.py run

or, as in production::

    gunicorn --preload -c python:modelkit.gunicorn -w 2 -b 127.0.0.1:8000 \
        --chdir examples/flask_app "app:create_app()"
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, render_template, request

from modelkit import InvalidInputError
from modelkit.flask import ModelKit, models

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
EXAMPLE = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}

# One extension object for any number of apps: each create_app() gets its own models.
kit = ModelKit(url_prefix="/models")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The application factory (``flask --app`` and gunicorn find it by name)."""
    app = Flask(__name__)
    app.config.from_mapping(
        # Paths are relative to this file's directory (the app's root_path).
        MODELKIT_MODELS={"iris": "bundles/iris"},
        MODELKIT_LOCK="models.lock",  # the bundle must have the digest train.py recorded
        MODELKIT_MAX_BATCH_SIZE=100,  # {"instances": [...]} of more records get 413
        MAX_CONTENT_LENGTH=64 * 1024,  # larger request bodies get 413
    )
    if config is not None:
        app.config.from_mapping(config)
    kit.init_app(app)  # loads the models now: before gunicorn --preload forks

    booted_by = os.getpid()

    @app.route("/", methods=["GET", "POST"])
    def score() -> str:
        values: dict[str, str] = {name: str(value) for name, value in EXAMPLE.items()}
        problems: dict[str, str] = {}
        result = None
        if request.method == "POST":
            values = {name: request.form.get(name, "").strip() for name in FEATURES}
            record: dict[str, Any] = {}
            for name, text in values.items():
                try:
                    record[name] = float(text)
                except ValueError:
                    problems[name] = "enter a number, such as 5.1"
            if not problems:
                try:
                    result = models["iris"].predict(record)
                except InvalidInputError as exc:
                    problems = {str(e["field"]): str(e["message"]) for e in exc.errors}
        return render_template(
            "score.html",
            features=FEATURES,
            values=values,
            problems=problems,
            result=result,
            model=models["iris"],
        )

    @app.get("/healthz")
    def health() -> dict[str, Any]:
        route = models["iris"]
        route.predict(EXAMPLE)  # ready means able to answer, not only started
        return {
            "status": "ok",
            "models": {name: models[name].version for name in models.names()},
            "pid": os.getpid(),
            "booted_by": booted_by,  # differs from pid in a worker forked by --preload
        }

    return app
