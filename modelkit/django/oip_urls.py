"""The Open Inference Protocol v2: ``path("", include("modelkit.django.oip_urls"))``.

Include it at the site's root: the protocol's URLs are ``/v2``, ``/v2/health/live``,
``/v2/health/ready``, ``/v2/models/<name>[/versions/<version>]``, their ``/ready``, and
``POST /v2/models/<name>[/versions/<version>]/infer``; any other URL under ``/v2`` gets the
protocol's 404.
"""

from __future__ import annotations

from django.urls import re_path  # type: ignore[import-untyped]  # Django ships no types

from . import views

__all__ = ["app_name", "urlpatterns"]

app_name = "modelkit_oip"

urlpatterns = [
    re_path(r"^v2(?P<path>/.*)?$", views.open_inference, name="v2"),
]
