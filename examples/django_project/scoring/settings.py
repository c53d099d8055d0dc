"""Settings of the example project: no database, one ONNX model, its lock file."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# An example: set DJANGO_SECRET_KEY (and leave DJANGO_DEBUG unset) anywhere real.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-insecure-secret-key")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = ["modelkit.django"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "scoring.urls"
WSGI_APPLICATION = "scoring.wsgi.application"
ASGI_APPLICATION = "scoring.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
    }
]

DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MODELKIT = {
    # Relative paths start from BASE_DIR.
    "MODELS": {"iris": "bundles/iris"},
    # Every bundle must have the digest pinned here (train.py writes it).
    "LOCK": "models.lock",
    # Load at start-up: wsgi.py and asgi.py call modelkit.django.load_models().
    "LOADING": "eager",
    "MAX_BATCH_SIZE": 100,
}
