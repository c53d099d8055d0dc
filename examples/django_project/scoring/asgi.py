"""ASGI entry point: ``uvicorn scoring.asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

import modelkit.django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoring.settings")

application = get_asgi_application()

# Verify and load every model before serving, off the event loop (which is not running yet).
modelkit.django.load_models()
