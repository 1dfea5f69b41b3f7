"""Mailbox settings, Reconnect and health (included from inbox/urls.py under mailboxes/)."""

from django.urls import path

from . import mailbox_views as views

urlpatterns = [
    path("", views.mailbox_list, name="mailbox_list"),
    path("connect/", views.mailbox_connect, name="mailbox_connect"),
    path("connect/test/", views.mailbox_connect_test, name="mailbox_test"),
    path("<int:pk>/", views.mailbox_settings, name="mailbox_settings"),
    path("<int:pk>/primary/", views.mailbox_make_primary, name="mailbox_primary"),
    path("<int:pk>/pause/", views.mailbox_pause, name="mailbox_pause"),
    path("<int:pk>/resume/", views.mailbox_resume, name="mailbox_resume"),
    path("<int:pk>/sync/", views.mailbox_sync_now, name="mailbox_sync_now"),
    path("<int:pk>/reconnect/", views.mailbox_reconnect, name="mailbox_reconnect"),
    path("<int:pk>/reconnect/test/", views.mailbox_reconnect_test, name="mailbox_reconnect_test"),
    path("<int:pk>/setup/", views.mailbox_setup, name="mailbox_setup"),
    path("<int:pk>/setup/test/", views.mailbox_setup_test, name="mailbox_setup_test"),
    path("<int:pk>/smtp-test/", views.mailbox_smtp_test, name="mailbox_smtp_test"),
    path("<int:pk>/send-test/", views.mailbox_send_test, name="mailbox_send_test"),
    path("<int:pk>/health/", views.mailbox_health_page, name="mailbox_health"),
    path("<int:pk>/held/<int:entry_pk>/retry/", views.held_retry, name="mailbox_held_retry"),
]
