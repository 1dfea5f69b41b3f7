"""Events about mailboxes and outgoing mail, declared here so that the mail engine (connector),
which sends them, and whoever listens (notifications/receivers.py) never import each other
(docs/architecture.md: ports and signals). Each is sent inside or after the writing
transaction; receivers defer their work with transaction.on_commit."""

from django.dispatch import Signal

# A mailbox stopped for a person: the server refused the login, the OAuth grant was revoked,
# or someone changed where it connects (docs/product.md §2.5).
mailbox_needs_reconnect = Signal()  # sender=Mailbox, mailbox_id, reason, actor_id=None

# A mailbox's OAuth sign-in dies within a week unless someone reconnects it (docs/product.md
# §2.9): told once per expiry to whoever must reconnect it.
mailbox_grant_expiring = Signal()  # sender=Mailbox, mailbox_id, expires_at

# An outbox entry that needs its author: refused for good ("failed"), or its outcome is
# unknown and a person must decide ("verify") (docs/product.md §5.2).
outbox_entry_stuck = Signal()  # sender=OutboxEntry, entry_id, state

# New mail was filed (not a first sync's history, not re-filing of old mail).
mail_filed = Signal()  # sender=Message, message_ids, initial, retroactive

# Conversations merged by the threader (a parent arrived after its replies): their messages and
# timeline moved from each source to its target before the sources are deleted without a
# cascade (connector/ingest/threads.py). Receivers move whatever else they keep on a thread.
# Sent inside the storing transaction: receivers write at once, in it.
threads_merged = Signal()  # sender=Thread, moves={source_id: target_id}

# A conversation was given to someone (not to nobody): the assignee is told
# (docs/product.md §7.8, §7.10). Sent inside the assigning transaction.
conversation_assigned = Signal()  # sender=Thread, thread_id, assignee_id, actor_id, event_id

# A sync stored new mail or saw changes (flags, expunges) in some folders of a mailbox: sent once
# per sync, after it committed, by connector/sync/mailbox.py publish_changed (the one place), for
# pages that want to refresh without polling. Receivers must be quick and must not fail.
mailbox_changed = Signal()  # sender=Mailbox, mailbox_id, folders=[names], stored=count
