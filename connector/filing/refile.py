"""Filing after the fact: an address or domain added to a record files the past mail it now
matches (docs/product.md §4.5). Rules 3 and 4 only (addresses and domains):
nothing old opens a ticket or sends an acknowledgement."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q

from inbox.models import MessageAddress

from .apply import BATCH_SIZE, FilingReport, file_batch
from .matching import MATCHED_ROLES


def refile_for_addresses(
    *, emails: Iterable[str] = (), domains: Iterable[str] = (), batch_size: int = BATCH_SIZE
) -> FilingReport:
    """File past mail that an added address or domain now matches (rules 3 and 4 only), in
    batches of `batch_size`, each in its own transaction, walking message ids upwards."""
    emails, domains = sorted(set(emails)), sorted(set(domains))
    report = FilingReport()
    if not emails and not domains:
        return report
    match = Q(address__in=emails) if emails else Q()
    for domain in domains:
        match |= Q(address__endswith=f"@{domain}")
    query = MessageAddress.objects.filter(match, role__in=MATCHED_ROLES)
    last = 0
    while True:
        ids = list(
            query.filter(message_id__gt=last)
            .order_by("message_id")
            .values_list("message_id", flat=True)
            .distinct()[:batch_size]
        )
        if not ids:
            return report
        report.add(file_batch(message_ids=ids, retroactive=True))
        last = ids[-1]
