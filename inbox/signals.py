"""Signals that inbox services send when a user action needs the network. connector/receivers.py
enqueues the matching task on commit; the beat tick picks up the pending rows anyway, so a lost
signal only delays the work."""

from django.dispatch import Signal

sync_requested = Signal()  # sender=Mailbox, mailbox_id=int
