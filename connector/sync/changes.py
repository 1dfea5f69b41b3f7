"""Changes made elsewhere to mail we already hold: flags set or cleared by other clients and
messages expunged on the server. With CONDSTORE one FETCH CHANGEDSINCE, else one FLAGS scan
(docs/reliability.md S-16, S-19); nothing at all when HIGHESTMODSEQ and the count are
unchanged (S-10).
"""

from __future__ import annotations

from django.db import transaction

from connector.sync import lease as leases
from connector.sync.folders import mark_off_server
from connector.sync.reports import FolderReport
from inbox.models import Folder, Location, Message


def sync_known(folder: Folder, session, lease: leases.Lease, report: FolderReport, status):
    """Flag changes and expunges made elsewhere, for the UIDs we already hold."""
    held = Location.objects.filter(folder=folder, uidvalidity=status.uidvalidity)
    if (
        status.highestmodseq is not None
        and folder.highest_modseq == status.highestmodseq
        and status.messages == held.count()
    ):
        # Nothing changed (RFC 7162: no new MODSEQ) and nothing was expunged: decided with a
        # COUNT, without loading every location of a 50,000-message folder
        # (docs/reliability.md S-10).
        return
    known = dict(
        Location.objects.filter(folder=folder, uidvalidity=status.uidvalidity).values_list(
            "uid", "flags"
        )
    )
    condstore = status.highestmodseq is not None
    unchanged = (
        condstore
        and folder.highest_modseq == status.highestmodseq
        and status.messages == len(known)
    )
    if not known or unchanged:
        if condstore and folder.highest_modseq != status.highestmodseq:
            Folder.objects.filter(pk=folder.pk).update(highest_modseq=status.highestmodseq)
        return
    top = max(known)
    on_server = set(session.search_uids(f"UID 1:{top}"))
    gone = [uid for uid in known if uid not in on_server]
    changed = session.fetch_flags(
        f"1:{top}", changed_since=folder.highest_modseq if condstore else None
    )
    updates = []
    for uid, (flags, modseq) in changed.items():
        if uid in known and uid in on_server and sorted(flags) != sorted(known[uid]):
            updates.append((uid, sorted(flags), modseq))
    with transaction.atomic():
        lease.check()
        if gone:
            message_ids = list(
                Location.objects.filter(
                    folder=folder, uidvalidity=status.uidvalidity, uid__in=gone
                ).values_list("message_id", flat=True)
            )
            Location.objects.filter(
                folder=folder, uidvalidity=status.uidvalidity, uid__in=gone
            ).delete()
            mark_off_server(message_ids)
            report.expunged += len(gone)
        if updates:
            locations = {
                loc.uid: loc
                for loc in Location.objects.filter(
                    folder=folder,
                    uidvalidity=status.uidvalidity,
                    uid__in=[u for u, _, _ in updates],
                )
            }
            for uid, flags, modseq in updates:
                loc = locations[uid]
                loc.flags, loc.modseq = flags, modseq or loc.modseq
            Location.objects.bulk_update(locations.values(), ["flags", "modseq"])
            _refresh_message_flags({loc.message_id for loc in locations.values()})
            report.flags_changed += len(updates)
        # The MODSEQ cursor moves in the same transaction as the changes it covers
        # (docs/reliability.md S-18).
        Folder.objects.filter(pk=folder.pk).update(highest_modseq=status.highestmodseq)
        folder.highest_modseq = status.highestmodseq


def _refresh_message_flags(message_ids: set[int]) -> None:
    rows = Location.objects.filter(message_id__in=message_ids).values_list("message_id", "flags")
    seen: dict[int, bool] = {}
    flagged: dict[int, bool] = {}
    for message_id, flags in rows:
        seen[message_id] = seen.get(message_id, False) or "\\Seen" in flags
        flagged[message_id] = flagged.get(message_id, False) or "\\Flagged" in flags
    Message.objects.filter(pk__in=[m for m, v in seen.items() if v]).update(seen=True)
    Message.objects.filter(pk__in=[m for m, v in seen.items() if not v]).update(seen=False)
    Message.objects.filter(pk__in=[m for m, v in flagged.items() if v]).update(flagged=True)
    Message.objects.filter(pk__in=[m for m, v in flagged.items() if not v]).update(flagged=False)
