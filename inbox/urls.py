from django.urls import include, path

from . import views

app_name = "inbox"

urlpatterns = [
    path("records/<str:record_type>/<int:pk>/email/", views.email_tab, name="email_tab"),
    path("", include("inbox.reading_urls")),  # reading one message (issue 6)
]
