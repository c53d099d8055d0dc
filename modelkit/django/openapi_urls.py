"""The OpenAPI document of the JSON endpoints, at the site's root:
``path("", include("modelkit.django.openapi_urls"))``.

It serves ``GET openapi.json`` where it is included, documenting the endpoints that
``include("modelkit.django.urls")`` mounts (under its default ``modelkit`` namespace): each
model's ``GET`` and ``POST .../predict``, with its input and output JSON Schemas, the limits and
the error shape. A URLconf of its own, because under the endpoints' prefix ``openapi.json``
would be a model's name.
"""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]  # Django ships no types

from . import views

__all__ = ["app_name", "urlpatterns"]

app_name = "modelkit_openapi"

urlpatterns = [
    path("openapi.json", views.openapi, name="openapi"),
]
