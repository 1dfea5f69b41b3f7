from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from crm.health import healthz
from crm.signin import SignInForm

urlpatterns = [
    path("healthz", healthz, name="healthz"),
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
