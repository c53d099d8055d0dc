"""The project's own views: a scoring page (sync) and a JSON scoring view (async).

Both use ``modelkit.django.models``; the generic JSON endpoints live under ``models/``.
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from modelkit.django import models


class IrisForm(forms.Form):
    """The four measurements the model takes, in centimetres."""

    sepal_length = forms.FloatField(min_value=0, max_value=50, label="Sepal length (cm)")
    sepal_width = forms.FloatField(min_value=0, max_value=50, label="Sepal width (cm)")
    petal_length = forms.FloatField(min_value=0, max_value=50, label="Petal length (cm)")
    petal_width = forms.FloatField(min_value=0, max_value=50, label="Petal width (cm)")


def home(request: HttpRequest) -> HttpResponse:
    """A form; submitted (GET, so it can be bookmarked), it shows the species and probabilities."""
    form = IrisForm(request.GET or None)
    model = models["iris"]
    prediction = model.predict(form.cleaned_data) if form.is_valid() else None
    return render(request, "home.html", {"form": form, "model": model, "prediction": prediction})


async def score(request: HttpRequest) -> JsonResponse:
    """``GET /score?sepal_length=5.1&...``: the species as JSON, predicted off the event loop."""
    form = IrisForm(request.GET)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=422)
    model = models["iris"]
    prediction = await model.apredict(form.cleaned_data)
    return JsonResponse(
        {
            "species": prediction.label,
            "probabilities": prediction.to_dict()["probabilities"],
            "model": {"version": model.version, "digest": model.digest},
        }
    )
