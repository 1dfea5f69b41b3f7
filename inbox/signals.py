"""Signals that inbox services send when a user action needs the network. connector/receivers.py
enqueues the matching task on commit; the beat tick picks up the pending rows anyway, so a lost
signal only delays the work."""

from django.dispatch import Signal

sync_requested = Signal()  # sender=Mailbox, mailbox_id=int
# Sent after a sync batch commits, with the ids of the messages it stored for the first time.
# Matching and filing plug in here (connector/receivers.py).
messages_stored = Signal()  # sender=Message, mailbox_id, message_ids, initial (first sync)
