from django.contrib import admin
from django.urls import include, path

from crm.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("inbox/", include("inbox.urls")),
    path("notes/", include("notes.urls")),
    path("notifications/", include("notifications.urls")),
    path("", include("crm.record_urls")),
]
