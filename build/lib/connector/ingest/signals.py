"""What the store tells the rest of the engine.

messages_stored is sent once a batch has committed, with the ids of the messages it stored for
the first time; connector/scheduling/receivers.py enqueues their filing."""

from django.dispatch import Signal

messages_stored = Signal()  # sender=Message, mailbox_id, message_ids, initial (first sync)
