"""Signals that inbox services send when a user action needs the network. connector/receivers.py
enqueues the matching task on commit; the beat tick picks up the pending rows anyway, so a lost
signal only delays the work."""

from django.dispatch import Signal

sync_requested = Signal()  # sender=Mailbox, mailbox_id=int
# Sent after a sync batch commits, with the ids of the messages it stored for the first time.
# Matching and filing plug in here (connector/receivers.py).
messages_stored = Signal()  # sender=Message, mailbox_id, message_ids, initial (first sync)

# Sending (issue 5): an outbox entry was queued (or queued again by a person). The receiver
# enqueues relay.send_outbox_entry on commit; the beat tick sends due entries anyway.
outbox_queued = Signal()  # sender=OutboxEntry, entry_id=int

# Questions the web layer asks the connector and waits for (inbox may not import connector:
# the import-linter layers contract). connector/receivers.py connects exactly one receiver to
# each; its return value is the answer (see inbox.services.ask_connector).
smtp_test_requested = Signal()  # mailbox -> None, or the user-facing error message
oauth_authorization_requested = Signal()  # provider, redirect_uri -> AuthorizationRequest
oauth_code_received = Signal()  # provider, code, code_verifier, redirect_uri, nonce -> OAuthGrant
