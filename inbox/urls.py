from django.urls import path

from . import views

app_name = "inbox"

urlpatterns = [
    path("records/<str:record_type>/<int:pk>/email/", views.email_tab, name="email_tab"),
]
