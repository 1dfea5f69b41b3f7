"""Every inbox URL, under /inbox/ and the ``inbox`` namespace; the view modules in inbox/views/
are named after what they show."""

from django.urls import path

from .views import (
    composing,
    connect,
    conversation_state,
    conversations,
    email_tab,
    events,
    imports,
    inbox,
    mailboxes,
    oauth,
    outbox,
    preferences,
    presence,
    qualify,
    reading,
    reports,
    triage,
)

app_name = "inbox"

urlpatterns = [
    # The Inbox, and conversations. A conversation is addressed by one of its messages: the
    # permission gate is per message.
    path("", inbox.inbox_page, name="inbox_page"),
    # Live updates of every open page: a server-sent event stream (docs/product.md §7.14).
    path("events/", events.events, name="events"),
    path("poll/", inbox.inbox_poll, name="inbox_poll"),
    path("sync/<int:pk>/", inbox.inbox_sync_now, name="inbox_sync_now"),
    path("density/", preferences.density_switch, name="density"),
    path("conversations/<int:pk>/", conversations.conversation, name="conversation"),
    path("conversations/<int:pk>/action/", conversations.message_action, name="message_action"),
    # A change the mail server refused, tried again (docs/product.md §7.12).
    path("changes/<int:pk>/retry/", conversations.server_write_retry, name="server_write_retry"),
    # A conversation's owner and state (docs/product.md §7.8), one or many at a time.
    path(
        "conversations/<int:pk>/state/",
        conversation_state.conversation_state,
        name="conversation_state",
    ),
    path("conversations/bulk/", conversation_state.conversations_bulk_action, name="bulk"),
    # Qualify: filing by hand.
    path("conversations/<int:pk>/qualify/", qualify.qualify_dialog, name="qualify_dialog"),
    path("conversations/<int:pk>/qualify/search/", qualify.qualify_search, name="qualify_search"),
    path("conversations/<int:pk>/qualify/link/", qualify.qualify_link, name="qualify_link"),
    path("filings/<int:pk>/unlink/", qualify.filing_unlink, name="filing_unlink"),
    path("filings/<int:pk>/relink/", qualify.filing_relink, name="filing_relink"),
    # Triage.
    path("triage/", triage.triage_page, name="triage"),
    path("triage/qualify/", triage.triage_qualify, name="triage_qualify"),
    path("triage/records/", triage.record_picker, name="record_picker"),
    path("triage/dismiss/", triage.triage_dismiss_view, name="triage_dismiss"),
    path("triage/<int:pk>/ignore/", triage.triage_ignore, name="triage_ignore"),
    # Reports (docs/product.md §7.11): the page and the same figures as CSV.
    path("reports/", reports.reports_page, name="reports"),
    path("reports.csv", reports.reports_csv, name="reports_csv"),
    # Writing, and preferences.
    path("preferences/", preferences.preferences_page, name="preferences"),
    path("compose/", composing.compose_page, name="compose"),
    # Drafts and Undo send (docs/product.md §5.5).
    path("compose/undo/<int:pk>/", composing.outbox_undo_send, name="undo_send"),
    path("drafts/", composing.drafts_page, name="drafts"),
    path("drafts/<int:pk>/delete/", composing.draft_delete, name="draft_delete"),
    # The Outbox (docs/product.md §5.4).
    path("outbox/", outbox.outbox_page, name="outbox"),
    path("outbox/<int:pk>/edit/", outbox.outbox_edit, name="outbox_edit"),
    path("outbox/<int:pk>/<str:action>/", outbox.outbox_action, name="outbox_action"),
    # Presence: who else has a conversation open, who is writing a reply.
    path("conversations/<int:pk>/presence/", presence.presence, name="presence"),
    # The Email tab of every record's page.
    path("records/<str:record_type>/<int:pk>/email/", email_tab.email_tab, name="email_tab"),
    # Mailbox settings, health, and connecting (the wizard, Reconnect, OAuth setup).
    path("mailboxes/", mailboxes.mailbox_list, name="mailbox_list"),
    path("mailboxes/connect/", connect.mailbox_connect, name="mailbox_connect"),
    path("mailboxes/connect/test/", connect.mailbox_connect_test, name="mailbox_test"),
    path("mailboxes/<int:pk>/", mailboxes.mailbox_settings, name="mailbox_settings"),
    path("mailboxes/<int:pk>/primary/", mailboxes.mailbox_make_primary, name="mailbox_primary"),
    path("mailboxes/<int:pk>/pause/", mailboxes.mailbox_pause, name="mailbox_pause"),
    path("mailboxes/<int:pk>/resume/", mailboxes.mailbox_resume, name="mailbox_resume"),
    path("mailboxes/<int:pk>/sync/", mailboxes.mailbox_sync_now, name="mailbox_sync_now"),
    path("mailboxes/<int:pk>/reconnect/", connect.mailbox_reconnect, name="mailbox_reconnect"),
    path(
        "mailboxes/<int:pk>/reconnect/test/",
        connect.mailbox_reconnect_test,
        name="mailbox_reconnect_test",
    ),
    path("mailboxes/<int:pk>/setup/", connect.mailbox_setup, name="mailbox_setup"),
    path("mailboxes/<int:pk>/setup/test/", connect.mailbox_setup_test, name="mailbox_setup_test"),
    path("mailboxes/<int:pk>/servers/", mailboxes.mailbox_servers, name="mailbox_servers"),
    path("mailboxes/<int:pk>/smtp-test/", mailboxes.mailbox_smtp_test, name="mailbox_smtp_test"),
    path("mailboxes/<int:pk>/send-test/", mailboxes.mailbox_send_test, name="mailbox_send_test"),
    path("mailboxes/<int:pk>/health/", mailboxes.mailbox_health_page, name="mailbox_health"),
    path("mailboxes/<int:pk>/grant/", mailboxes.mailbox_grant, name="mailbox_grant"),
    path("mailboxes/<int:pk>/revoke/", mailboxes.mailbox_revoke, name="mailbox_revoke"),
    path("mailboxes/<int:pk>/support/", mailboxes.mailbox_support, name="mailbox_support"),
    path("mailboxes/<int:pk>/exclusions/", mailboxes.mailbox_exclusions, name="mailbox_exclusions"),
    path(
        "mailboxes/<int:pk>/api-senders/", mailboxes.mailbox_api_senders, name="mailbox_api_senders"
    ),
    path("mailboxes/<int:pk>/precedence/", mailboxes.mailbox_precedence, name="mailbox_precedence"),
    path(
        "mailboxes/<int:pk>/held/<int:entry_pk>/retry/",
        mailboxes.held_retry,
        name="mailbox_held_retry",
    ),
    # Importing .mbox/.eml files (docs/product.md §3.10).
    path("mailboxes/<int:pk>/import/", imports.import_page, name="mailbox_import_page"),
    path("mailboxes/<int:pk>/import/upload/", imports.import_upload, name="mailbox_import_upload"),
    path("mailboxes/<int:pk>/import/<int:job_pk>/", imports.import_progress, name="mailbox_import"),
    path("oauth/<str:provider>/start/", oauth.oauth_start, name="oauth_start"),
    path("oauth/callback/", oauth.oauth_callback, name="oauth_callback"),
    # Reading one message. Every URL the sandboxed frame loads starts with messages/<pk>/: the
    # frame's CSP allows images from that message's paths only.
    path("messages/<int:pk>/", reading.message_read, name="message_read"),
    path("messages/<int:pk>/body/", reading.message_body, name="message_body"),
    path("messages/<int:pk>/raw/", reading.message_raw, name="message_raw"),
    path(
        "messages/<int:pk>/attachments/<int:attachment_pk>/",
        reading.attachment_download,
        name="attachment_download",
    ),
    path(
        "messages/<int:pk>/inline/<int:attachment_pk>/",
        reading.message_inline,
        name="message_inline",
    ),
    path("messages/<int:pk>/image/", reading.image_proxy, name="image_proxy"),
]
