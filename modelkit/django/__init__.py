"""Django integration: ``INSTALLED_APPS += ["modelkit.django"]`` and one ``MODELKIT`` setting.

In views::

    from modelkit.django import models

    def score(request):
        return JsonResponse(models["iris"].predict(record).to_dict())

    async def ascore(request):
        return JsonResponse((await models["iris"].apredict(record)).to_dict())

Mount the JSON endpoints with ``path("models/", include("modelkit.django.urls"))``. Importing
this module needs no configured settings: the models load on first use, or in
:func:`load_models`. See the Django guide in the documentation.
"""

from __future__ import annotations

from .._deps import require

require("django", extra="django", feature="modelkit.django")

from ._loading import Models, aload_models, load_models, models  # noqa: E402 - after the check

__all__ = ["Models", "aload_models", "load_models", "models"]
