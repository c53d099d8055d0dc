"""The JSON endpoints: ``path("models/", include("modelkit.django.urls"))``.

==============================  ====================================================
``GET  models/``                the models, with version, digest and URL
``GET  models/<name>``          name, version, digest and input/output JSON Schemas
``POST models/<name>/predict``  one record, or ``{"instances": [...]}``
``GET  models/<name>/report``   the model's report page (HTML), with
                                ``settings.MODELKIT["REPORT"] = True``
==============================  ====================================================

Any other URL under the prefix gets a JSON 404, so mount it under a prefix of its own.
"""

from __future__ import annotations

from django.urls import path, re_path  # type: ignore[import-untyped]  # Django ships no types

from . import views

__all__ = ["app_name", "urlpatterns"]

app_name = "modelkit"

urlpatterns = [
    path("", views.index, name="index"),
    path("<str:name>", views.describe, name="model"),
    path("<str:name>/predict", views.predict, name="predict"),
    path("<str:name>/report", views.report, name="report"),
    re_path(r"^(?P<path>.+)$", views.not_found, name="not_found"),
]
