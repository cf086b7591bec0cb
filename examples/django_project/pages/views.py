"""Model-free views: a page with a CSRF-protected form, its result, and a health check."""
from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods


class GreetForm(forms.Form):
    name = forms.CharField(max_length=100)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "pages/index.html", {"form": GreetForm()})


@require_http_methods(["POST"])
def greet(request: HttpRequest) -> HttpResponse:
    form = GreetForm(request.POST)
    if not form.is_valid():
        return render(request, "pages/index.html", {"form": form}, status=400)
    return render(request, "pages/greeting.html", {"name": form.cleaned_data["name"]})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "server": request.META.get("SERVER_SOFTWARE", "")})
