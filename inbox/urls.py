from django.urls import include, path

from . import views

app_name = "inbox"

urlpatterns = [
    path("", views.inbox_page, name="inbox_page"),
    path("poll/", views.inbox_poll, name="inbox_poll"),
    # A conversation is addressed by one of its messages: the permission gate is per message.
    path("conversations/<int:pk>/", views.conversation, name="conversation"),
    path("conversations/<int:pk>/action/", views.message_action, name="message_action"),
    path("conversations/<int:pk>/qualify/", views.qualify_dialog, name="qualify_dialog"),
    path("conversations/<int:pk>/qualify/search/", views.qualify_search, name="qualify_search"),
    path("conversations/<int:pk>/qualify/link/", views.qualify_link, name="qualify_link"),
    path("filings/<int:pk>/unlink/", views.filing_unlink, name="filing_unlink"),
    path("triage/", views.triage_page, name="triage"),
    path("triage/qualify/", views.triage_qualify, name="triage_qualify"),
    path("triage/records/", views.record_picker, name="record_picker"),
    path("preferences/", views.preferences_page, name="preferences"),
    path("compose/", views.compose_page, name="compose"),
    path("records/<str:record_type>/<int:pk>/email/", views.email_tab, name="email_tab"),
    path("mailboxes/", include("inbox.mailbox_urls")),  # settings, Reconnect, health (issue 6)
    path("", include("inbox.oauth_urls")),  # connect/reconnect with Google or Microsoft
    path("", include("inbox.reading_urls")),  # reading one message (issue 6)
]
