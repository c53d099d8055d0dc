"""The scoring page, a JSON scoring view of the project's own, and modelkit's endpoints."""

from __future__ import annotations

from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("score", views.score, name="score"),
    path("models/", include("modelkit.django.urls")),
]
