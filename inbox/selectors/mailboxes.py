"""Reads for the mailbox settings and health pages.

Who sees a mailbox here is decided by inbox.permissions alone: the people who read it
(owner, grantees) and the people who manage it (admins, for shared mailboxes). Admins see a
shared mailbox's settings and health without a grant, because they manage it; they never see
someone's personal mailbox (docs/reliability.md C-11). Everyone else gets the same 404 as for a
missing one."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from ..models import (
    Folder,
    LedgerEntry,
    Mailbox,
    PendingChange,
    PrimaryMailbox,
    PushGateway,
    WatchState,
)
from ..permissions import can_manage_mailbox, readable_mailbox_ids

HELD_SHOWN = 50  # held messages listed on the health page (the count says if there are more)
CHANGES_SHOWN = 20  # latest changes the server did not take in full, on the health page


def settings_mailboxes(user) -> QuerySet[Mailbox]:
    """Mailboxes on the user's settings page: readable ones, and shared ones an admin manages."""
    if not user.is_authenticated:
        return Mailbox.objects.none()
    condition = Q(pk__in=readable_mailbox_ids(user))
    if user.is_superuser:
        condition |= Q(kind=Mailbox.Kind.SHARED)
    return Mailbox.objects.filter(condition)


def get_settings_mailbox_or_404(user, pk: int) -> Mailbox:
    try:
        return settings_mailboxes(user).select_related("owner").get(pk=pk)
    except Mailbox.DoesNotExist as exc:
        raise Http404("No such mailbox.") from exc


def get_managed_mailbox_or_404(user, pk: int) -> Mailbox:
    """For changes: a grantee who may read a shared mailbox but not manage it gets 404 too."""
    mailbox = get_settings_mailbox_or_404(user, pk)
    if not can_manage_mailbox(user, mailbox):
        raise Http404("No such mailbox.")
    return mailbox


def settings_rows(user) -> list[dict]:
    """The settings page's list: primary first, then personal before shared, by address."""
    primary_id = (
        PrimaryMailbox.objects.filter(user=user).values_list("mailbox_id", flat=True).first()
    )
    mailboxes = list(
        settings_mailboxes(user)
        .annotate(active_folder_count=Count("folders", filter=Q(folders__is_active=True)))
        .order_by("email_address", "pk")
    )
    readable = set(readable_mailbox_ids(user).values_list("pk", flat=True))
    rows = [
        {
            "mailbox": m,
            "is_primary": m.pk == primary_id,
            "can_manage": can_manage_mailbox(user, m),
            # Primary is the mailbox the user reads and sends from first: only a readable one.
            "can_be_primary": m.pk in readable,
        }
        for m in mailboxes
    ]
    rows.sort(key=lambda r: (not r["is_primary"], r["mailbox"].kind != Mailbox.Kind.PERSONAL))
    return rows


def reconnect_banner_mailboxes(user) -> list[Mailbox]:
    """Mailboxes that need reconnecting and that this user can reconnect: their own personal
    ones, and shared ones for admins. One query."""
    if not user.is_authenticated:
        return []
    condition = Q(kind=Mailbox.Kind.PERSONAL, owner=user)
    if user.is_superuser:
        condition |= Q(kind=Mailbox.Kind.SHARED)
    return list(
        Mailbox.objects.filter(condition, state=Mailbox.State.NEEDS_RECONNECT)
        .only(
            "pk",
            "email_address",
            "display_name",
            "kind",
            "connection_type",
            "state",
            "reconnect_reason",
            "refused_by",
        )
        .order_by("email_address", "pk")
    )


def mailbox_health(mailbox: Mailbox) -> dict:
    """State, progress, per-folder counts, ledger counts and held messages: a fixed number of
    queries whatever the number of messages."""
    folders = list(
        Folder.objects.filter(mailbox=mailbox)
        .annotate(stored=Count("locations"))
        .order_by("-is_active", "name")
    )
    counts = dict(
        LedgerEntry.objects.filter(mailbox=mailbox)
        .order_by()
        .values_list("outcome")
        .annotate(n=Count("pk"))
        .values_list("outcome", "n")
    )
    ledger = [
        {"outcome": value, "label": label, "count": counts.get(value, 0)}
        for value, label in LedgerEntry.Outcome.choices
    ]
    held = list(
        LedgerEntry.objects.filter(mailbox=mailbox, outcome=LedgerEntry.Outcome.HELD)
        .select_related("folder")
        .order_by("-updated_at", "-pk")[:HELD_SHOWN]
    )
    # Transient failures (server, network, storage) waiting for their back-off: never held,
    # retried for as long as the fault lasts (docs/reliability.md S-29).
    now = timezone.now()
    waiting = list(
        LedgerEntry.objects.filter(
            mailbox=mailbox, outcome=LedgerEntry.Outcome.FAILED, next_retry_at__isnull=False
        )
        .select_related("folder")
        .order_by("next_retry_at", "pk")[:HELD_SHOWN]
    )
    for entry in waiting:
        entry.due = entry.next_retry_at <= now
    # Changes made in the CRM that the server refused or could only half do (e.g. a delete left
    # flagged because the server lacks UIDPLUS: docs/reliability.md S-30).
    unfinished_changes = list(
        PendingChange.objects.filter(mailbox=mailbox, done_at__isnull=False)
        .exclude(error="")
        .order_by("-done_at", "-pk")[:CHANGES_SHOWN]
    )
    total, done = mailbox.progress_total, mailbox.progress_done
    first_sync_running = not mailbox.first_sync_done and mailbox.state in (
        Mailbox.State.ACTIVE,
        Mailbox.State.SYNCING,
        Mailbox.State.ERROR,
    )
    return {
        "folders": folders,
        "ledger": ledger,
        "held": held,
        "held_count": counts.get(LedgerEntry.Outcome.HELD, 0),
        "unfinished_changes": unfinished_changes,
        "waiting": waiting,
        "failed_count": counts.get(LedgerEntry.Outcome.FAILED, 0),
        "progress_total": total,
        "progress_done": min(done, total) if total else done,
        "progress_percent": int(100 * min(done, total) / total) if total else 0,
        "first_sync_running": first_sync_running,
        "refresh_label": _every(mailbox.refresh_interval),
        # Poll while something moves: a sync under way, or a first sync still to come.
        "live": mailbox.state == Mailbox.State.SYNCING or first_sync_running,
        "watch": mailbox_watch(mailbox, now=now),
    }


WATCH_NOTES = {
    WatchState.LIVE: "New mail arrives within seconds",
    WatchState.CONNECTING: "The push gateway is connecting",
    WatchState.RECONNECTING: "Connection lost; checked every interval meanwhile",
    WatchState.POLLING: "Checked every interval",
}


def mailbox_watch(mailbox: Mailbox, *, now=None) -> dict:
    """How new mail reaches the mailbox (docs/product.md §3.11): the push gateway's watch, shown
    as polling whenever its gateway's lease ran out (it died) even before anyone cleaned up."""
    now = now or timezone.now()
    gateway = (
        PushGateway.objects.filter(pk=mailbox.watch_gateway_id).first()
        if mailbox.watch_gateway_id
        else None
    )
    alive = gateway is not None and gateway.expires_at > now
    state = mailbox.watch_state if alive else WatchState.POLLING
    if mailbox.state in (Mailbox.State.PAUSED, Mailbox.State.NEEDS_RECONNECT):
        state = WatchState.POLLING
    return {
        "state": state,
        "label": WatchState(state).label,
        "note": WATCH_NOTES[state],
        "heartbeat": gateway.heartbeat_at if alive else None,
        "error": mailbox.watch_error if state == WatchState.RECONNECTING else "",
    }


def push_summary(*, now=None) -> dict:
    """For /healthz: watches by state and each gateway's heartbeat, in a fixed number of
    queries. No mailbox addresses and no host names: /healthz answers anyone."""
    now = now or timezone.now()
    watched = dict(
        Mailbox.objects.filter(watch_gateway__expires_at__gt=now)
        .order_by()
        .values_list("watch_state")
        .annotate(n=Count("pk"))
        .values_list("watch_state", "n")
    )
    syncable = Mailbox.objects.filter(
        state__in=(Mailbox.State.ACTIVE, Mailbox.State.SYNCING, Mailbox.State.ERROR)
    ).count()
    counts = {state: watched.get(state, 0) for state in WatchState.values}
    counts[WatchState.POLLING] = max(
        syncable - sum(n for state, n in watched.items() if state != WatchState.POLLING), 0
    )
    gateways = [
        {
            "id": g.pk,
            "heartbeat": g.heartbeat_at.isoformat(),
            "alive": g.expires_at > now,
            "sessions": g.sessions,
            "live": g.live,
        }
        for g in PushGateway.objects.order_by("pk")
    ]
    return {"watches": counts, "gateways": gateways}


def _every(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "Every hour" if hours == 1 else f"Every {hours} hours"
    if seconds % 60 == 0:
        minutes = seconds // 60
        return "Every minute" if minutes == 1 else f"Every {minutes} minutes"
    return f"Every {seconds} seconds"


# --- Email API senders (docs/product.md §6), for the admin site and the settings page ----------


def api_senders_with_last_mail(queryset):
    """Email API senders, each annotated with its last incoming mail's headers and time (what
    sender_works_today reads): one query however many senders."""
    from django.db.models import OuterRef, Subquery

    from ..models import Message

    last = Message.objects.filter(
        mailbox=OuterRef("mailbox"), from_address=OuterRef("address"), is_outgoing=False
    ).order_by("-pk")
    return queryset.select_related("mailbox").annotate(
        last_mail_headers=Subquery(last.values("headers")[:1]),
        last_mail_at=Subquery(last.values("created_at")[:1]),
    )


def sender_works_today(sender) -> tuple[str, str]:
    """Whether an Email API sender's documents can be applied today, and why: ("yes", "no",
    "unknown"), text. A document is applied only when our receiving server authenticated the
    sender for its From domain (docs/reliability.md C-17), which its last mail shows; `sender`
    comes from api_senders_with_last_mail."""
    from django.conf import settings

    from .. import ports

    if not settings.RELAY_AUTHSERV_IDS:
        return "no", (
            "No: RELAY_AUTHSERV_IDS is not set, so no mail can be verified and every "
            "document is refused."
        )
    if not sender.mailbox.create_tickets:
        return "no", (
            "No: the mailbox does not create tickets; only support mailboxes take documents."
        )
    warning = "" if sender.secret_hash else " Warning: no secret set."
    at = getattr(sender, "last_mail_at", None)
    if at is None:
        return "unknown", (
            "Not known yet: no mail from this sender so far. It needs an SPF, DKIM or DMARC "
            f"pass for its own domain from {', '.join(settings.RELAY_AUTHSERV_IDS)}." + warning
        )
    check = ports.mail().check_sender(sender.last_mail_headers or {}, sender.address)
    when = timezone.localtime(at).strftime("%Y-%m-%d %H:%M")
    if check.verified:
        return "yes", f"Yes: its last mail ({when}) was verified: {check.detail}." + warning
    return "no", f"No: its last mail ({when}) was not verified: {check.detail}." + warning
