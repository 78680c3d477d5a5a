from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotation import views as annotation_views
from annotation.accounts import LoginForm
from annotation.services.members import invitation_token_generator

# Django's own 400, 404 and 500 answer the API's {"detail", "code"} under /api/.
handler400 = "config.error_views.bad_request"
handler404 = "config.error_views.not_found"
handler500 = "config.error_views.server_error"


class ApiDocsView(SpectacularSwaggerSplitView):
    """The Swagger UI page at /api/docs/, answering GET and HEAD only.

    DRF answers OPTIONS with the view's metadata through its one renderer, a template
    renderer given no template for it: a 500. Left out of the methods, OPTIONS is a 405
    naming GET and HEAD in Allow.
    """

    http_method_names = ["get", "head"]


# The API first: its calls are the busiest, and Django tries patterns in order (every page
# pattern below would be tried, and fail, before each API call otherwise).
urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("annotation.api_urls")),
    path("api/", include("annotation.tools_api_urls")),
    path("api/", include("annotation.members_api_urls")),
    path("api/", include("reviewers.api_urls")),
    path("api/", include("scoring.loop.api_urls")),
    path("api/", include("scoring.datasets.api_urls")),
    path("api/", include("scoring.deploy.api_urls")),
    path("api/", include("scoring.evaluation.api_urls")),
    path("", annotation_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The one-time password-set link of an invited member (annotation.services.members): it
    # dies once the password is set, the member is removed or the user deactivated.
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(token_generator=invitation_token_generator),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("healthz", annotation_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("annotation.urls")),
    path("", include("annotation.import_urls")),
    path("", include("annotation.members_urls")),
    path("", include("reviewers.urls")),
    path("", include("scoring.loop.urls")),
    path("", include("scoring.dashboard.urls")),
    path("", include("scoring.evaluation.urls")),
]
