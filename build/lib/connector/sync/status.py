"""What `manage.py mailbox status --json` prints about one mailbox."""

from __future__ import annotations

from django.db.models import Count

from inbox.models import LedgerEntry, Mailbox


def mailbox_status(mailbox: Mailbox) -> dict:
    """What `manage.py mailbox status --json` prints."""
    folders = mailbox.folders.annotate(stored=Count("locations")).order_by("name")
    ledger = dict(
        LedgerEntry.objects.filter(mailbox=mailbox)
        .values_list("outcome")
        .annotate(n=Count("id"))
        .values_list("outcome", "n")
    )
    return {
        "id": mailbox.pk,
        "email": mailbox.email_address,
        "state": mailbox.state,
        "last_error": mailbox.last_error,
        "last_success_at": mailbox.last_success_at.isoformat() if mailbox.last_success_at else None,
        "next_sync_at": mailbox.next_sync_at.isoformat() if mailbox.next_sync_at else None,
        "progress": {"done": mailbox.progress_done, "total": mailbox.progress_total},
        "messages": mailbox.messages.count(),
        "folders": [
            {
                "name": f.name,
                "special_use": f.special_use,
                "active": f.is_active,
                "on_server": f.exists_on_server,
                "uidvalidity": f.uidvalidity,
                "last_uid": f.last_uid,
                "highest_modseq": f.highest_modseq,
                "messages": f.stored,
            }
            for f in folders
        ],
        "ledger": {o: ledger.get(o, 0) for o in LedgerEntry.Outcome.values},
    }
