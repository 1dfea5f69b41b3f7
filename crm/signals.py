"""Signals crm sends about its own records. crm imports neither inbox nor connector (the layers
contract), so whoever cares about mail listens here: connector/scheduling/receivers.py files past
mail that a newly added address or domain now matches (docs/product.md §4.5)."""

from django.dispatch import Signal

# Sent inside the writing transaction after addresses or domains were added to a record;
# receivers defer their work with transaction.on_commit.
addresses_added = Signal()  # sender=model class, record_type, record_id, emails, domains
