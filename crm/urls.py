from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_GET

from crm.health import healthz
from crm.signin import SignInForm


@login_not_required
@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico wherever a page names no icon (the admin site, a
    downloaded file, an error page): the app's icon rather than a 404 in every console."""
    return redirect(static("img/relay.svg"))


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    # Django's sign-in page with the lock's message (crm/signin.py); the rest of its URLs as is.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=SignInForm),
        name="login",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("inbox/", include("inbox.urls")),
    path("notes/", include("notes.urls")),
    path("notifications/", include("notifications.urls")),
    path("", include("crm.record_urls")),
]
