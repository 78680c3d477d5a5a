"""Request types for views that run only for a signed-in user (django-stubs' recommended way).

`login_required` and DRF's `IsAuthenticated` make `request.user` a `User`, but the stubs cannot
know it; a view annotated with these types can pass `request.user` on without a cast.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails
from rest_framework.request import Request


class HtmxRequest(HttpRequest):
    htmx: HtmxDetails


class SignedInRequest(HtmxRequest):
    user: User


class SignedInApiRequest(Request):
    user: User
