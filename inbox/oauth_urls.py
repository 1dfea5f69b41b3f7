"""URLs of the OAuth connect/reconnect flow (included from inbox/urls.py)."""

from django.urls import path

from . import oauth_views

urlpatterns = [
    path("oauth/<str:provider>/start/", oauth_views.oauth_start, name="oauth_start"),
    path("oauth/callback/", oauth_views.oauth_callback, name="oauth_callback"),
]
