"""WSGI entry point: ``gunicorn --preload scoring.wsgi`` (or waitress, or any WSGI server)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

import modelkit.django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoring.settings")

application = get_wsgi_application()

# Verify and load every model now: a bad bundle stops the start-up rather than the first
# request, and with gunicorn --preload the workers share the loaded models.
modelkit.django.load_models()
