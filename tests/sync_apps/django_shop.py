"""A one-module Django project (settings, URLs, views) that tests/test_sync_frameworks.py
serves with gunicorn: ``django_shop:application``."""

from __future__ import annotations

import os

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="tests-only",
    ALLOWED_HOSTS=["127.0.0.1", "testserver"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["asynctracker.integrations.django.TrackingMiddleware"],
    ASYNCTRACKER={
        "collector": os.environ["ASYNCTRACKER_COLLECTOR_URL"],
        "db_name": os.environ["ASYNCTRACKER_DB_PATH"],
        "app_id": "django-shop",
        "trusted_proxies": ["127.0.0.1"],
        "track_page_views": True,
    },
)

from django.core.wsgi import get_wsgi_application  # noqa: E402 (after configure)
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from asynctracker.integrations.django import get_tracker  # noqa: E402


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})


def page(request: HttpRequest, n: int) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})


def buy(request: HttpRequest, sku: str) -> JsonResponse:
    return JsonResponse({"event_id": get_tracker().track_struct_event("shop", "buy", label=sku)})


urlpatterns = [
    path("health", health),
    path("page/<int:n>", page),
    path("buy/<str:sku>", buy),
]

application = get_wsgi_application()
