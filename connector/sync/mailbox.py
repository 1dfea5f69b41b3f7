"""One sync of one mailbox, start to end (the folder work is in the modules beside this one).

1. take the mailbox's lease (connector/sync/lease.py); another holder means "already syncing";
2. log in; list folders (connector/sync/folders.py: renames are recognised by an unchanged
   UIDVALIDITY, docs/reliability.md S-04);
3. write the changes people made in the CRM to the server (connector/sync/writeback.py);
4. per active folder, fetch and store what is new (connector/sync/newmail.py), then pick up
   flag changes and expunges made elsewhere (connector/sync/changes.py);
5. drop locations of folders gone from the server; mark messages with no copy left
   "no longer on the server" (they stay filed, S-15);
6. record the outcome on the mailbox: active and next sync time, or error with back-off, or
   needs-reconnect when the login was refused (S-28: no retry storm, nothing overwritten).
A folder with nothing new costs a constant number of commands: EXAMINE, and with CONDSTORE
nothing else (S-10).

Two ways in besides the beat's full sync (docs/product.md §3.11):
- ``folders=[...]``: the push gateway's targeted sync of the folders a server said changed
  (connector/scheduling/gateway.py). Steps 3 and 4 run for those folders only; step 5 and the
  next poll time are left to the next full sync. A first sync is always full.
- a sync that finds the mailbox busy records the request (``sync_requested_at``), so another
  sync runs right after the current one (connector/scheduling/tasks.py) rather than at the next
  interval: mail that arrived while a sync ran is never left waiting (docs/reliability.md S-36).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from connector.sync import lease as leases
from connector.sync import watches
from connector.sync.folders import discover_folders, forget_vanished_folders
from connector.sync.newmail import BATCH_SIZE, plan_new_uids, sync_folder
from connector.sync.reports import FolderReport, SyncReport
from connector.sync.writeback import push_pending_changes
from connector.transport.errors import AuthenticationFailed, MailError, TemporaryFailure
from connector.transport.imap import open_session
from crm.selectors import mail_on
from inbox.crypto import SecretUnreadable
from inbox.models import Folder, Mailbox
from inbox.signals import mailbox_changed, mailbox_needs_reconnect

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(hours=1)
FIRST_SYNC_SKIPS = (Folder.SpecialUse.TRASH, Folder.SpecialUse.JUNK)


def _connect(mailbox: Mailbox):
    return open_session(mailbox, timeout=settings.RELAY_IMAP_TIMEOUT)


def sync_mailbox(
    mailbox_id: int,
    *,
    connect: Callable = _connect,
    batch_size: int = BATCH_SIZE,
    folders: Sequence[str] | None = None,
    task_id: str = "",
) -> SyncReport:
    report = SyncReport(mailbox_id=mailbox_id)
    mailbox = Mailbox.objects.get(pk=mailbox_id)
    if folders is not None and not mailbox.first_sync_done:
        folders = None  # the first sync is whole: its progress bar counts every folder
    report.targeted = folders is not None
    if mailbox.state in (Mailbox.State.PAUSED, Mailbox.State.NEEDS_RECONNECT):
        report.outcome = "not_active"
        report.error = f"mailbox is {mailbox.get_state_display().lower()}"
        return report
    if not mail_on():
        # The site's mail switch is off (docs/product.md §8.1): a task enqueued before it was
        # turned off, or a push sync, leaves the server alone; the mailbox stays due, so the
        # first beat tick after it is on again syncs it.
        report.outcome, report.error = "mail_off", "mail is switched off for the whole site"
        return report
    lease = leases.acquire(mailbox_id, task_id)
    if lease is None:
        report.outcome, report.error = "busy", "already syncing"
        # Whatever made this sync start (new mail pushed, Sync now) may have come after the
        # running sync looked: ask for one more once it ends (docs/reliability.md S-36).
        Mailbox.objects.filter(pk=mailbox_id, sync_requested_at__isnull=True).update(
            sync_requested_at=timezone.now()
        )
        return report
    try:
        Mailbox.objects.filter(pk=mailbox_id).update(
            state=Mailbox.State.SYNCING, last_sync_at=timezone.now(), sync_requested_at=None
        )
        with connect(mailbox) as session:
            _sync(mailbox, session, lease, report, batch_size, folders)
    except AuthenticationFailed as exc:
        _record_failure(mailbox, report, exc, needs_reconnect=True)
    except SecretUnreadable as exc:
        # No usable password (none stored, or a key that no longer opens it): only a person can
        # give one, so "needs reconnect", never "Syncing" for ever (docs/reliability.md C-36).
        _record_failure(mailbox, report, exc, needs_reconnect=True)
    except leases.LeaseLost as exc:
        # Another sync took the mailbox over (this worker was frozen, or too slow to renew):
        # the mailbox's state is that sync's to write now, not an error with a back-off.
        report.outcome, report.error = "lease_lost", str(exc)
        log.warning("sync mailbox=%s stopped: %s", mailbox.pk, exc)
    except MailError as exc:
        _record_failure(mailbox, report, exc, needs_reconnect=False)
    except (OSError, TimeoutError) as exc:  # anything the wrapper did not map is temporary
        _record_failure(mailbox, report, TemporaryFailure(str(exc)), needs_reconnect=False)
    else:
        now = timezone.now()
        done = dict(
            state=Mailbox.State.ACTIVE,
            last_error="",
            consecutive_failures=0,
            last_success_at=now,
            first_sync_done=True,
        )
        if folders is None:
            done["next_sync_at"] = now + poll_interval(mailbox)
        Mailbox.objects.filter(pk=mailbox_id, lease_generation=lease.generation).update(**done)
    finally:
        lease.release()
    report.requested_meanwhile = Mailbox.objects.filter(
        pk=mailbox_id, sync_requested_at__isnull=False
    ).exists()
    log.info("sync mailbox=%s %s", mailbox_id, report.summary())
    if report.completed:
        publish_changed(report)
    return report


def poll_interval(mailbox: Mailbox) -> timedelta:
    """Until the next poll: the mailbox's interval, or only the safety-net interval while a
    push gateway watches it live (docs/product.md §3.1, §3.11). A watch that breaks brings the
    poll back at once (connector/sync/watches.py)."""
    interval = timedelta(seconds=mailbox.refresh_interval)
    if Mailbox.objects.filter(pk=mailbox.pk).filter(watches.live_q()).exists():
        return max(interval, timedelta(seconds=settings.RELAY_PUSH_SAFETY_POLL))
    return interval


def publish_changed(report: SyncReport) -> None:
    """The one place that says "mailbox X, folders Y: N messages stored" once a sync ends, for
    whoever wants to refresh a page without polling (inbox/signals.py mailbox_changed)."""
    changed = [f.name for f in report.folders if f.stored or f.expunged or f.flags_changed]
    if not changed:
        return
    # send_robust: a listener's failure is logged and never fails the sync that committed.
    mailbox_changed.send_robust(
        sender=Mailbox,
        mailbox_id=report.mailbox_id,
        folders=changed,
        stored=report.total("stored"),
    )


def _record_failure(mailbox: Mailbox, report: SyncReport, exc: Exception, *, needs_reconnect):
    report.outcome = "needs_reconnect" if needs_reconnect else "error"
    report.error = str(exc)[:2000]
    failures = mailbox.consecutive_failures + 1
    if needs_reconnect:
        record_refused_login(mailbox.pk, report.error, failures=failures)
    else:
        backoff = min(timedelta(seconds=30) * (2 ** min(failures - 1, 10)), MAX_BACKOFF)
        Mailbox.objects.filter(pk=mailbox.pk).update(
            state=Mailbox.State.ERROR,
            last_error=report.error,
            consecutive_failures=failures,
            next_sync_at=timezone.now() + backoff,
        )
    log.warning("sync mailbox=%s failed (%s): %s", mailbox.pk, report.outcome, report.error)


def record_refused_login(mailbox_id: int, detail: str, *, failures: int | None = None) -> bool:
    """The server refused the login (the sync's, or the push gateway's): stop until a person
    reconnects (no retry storm that gets the account locked by the provider; the stored
    password is left as it was; docs/reliability.md S-28). False if it already needed it."""
    changes = dict(
        state=Mailbox.State.NEEDS_RECONNECT,
        last_error=detail[:2000],
        next_sync_at=None,
        refused_by="imap",
    )
    if failures is not None:
        changes["consecutive_failures"] = failures
    updated = (
        Mailbox.objects.filter(pk=mailbox_id)
        .exclude(state=Mailbox.State.NEEDS_RECONNECT)
        .update(**changes)
    )
    if updated:
        # Its owner (or the admins) are told (notifications/receivers.py, through inbox).
        mailbox_needs_reconnect.send(
            sender=Mailbox, mailbox_id=mailbox_id, reason="the server refused the login"
        )
    return bool(updated)


def _sync(
    mailbox: Mailbox,
    session,
    lease: leases.Lease,
    report: SyncReport,
    batch_size: int,
    only: Sequence[str] | None = None,
):
    folders = discover_folders(mailbox, session)
    report.changes_pushed = push_pending_changes(mailbox, session, folders)
    active = [f for f in folders if f.is_active and f.is_selectable and f.exists_on_server]
    if only is not None:
        wanted = set(only)
        active = [f for f in active if f.name in wanted]
    initial = not mailbox.first_sync_done
    if initial:
        # The first sync leaves Trash and Junk out even when they are ticked: it brings the
        # mail people kept first, and the next sync takes them, as history (docs/product.md
        # §3.5; connector/sync/newmail.py sync_folder marks a folder's first enumeration).
        active = [f for f in active if f.special_use not in FIRST_SYNC_SKIPS]
    plans = {}
    if initial:
        # First sync: count what each folder will bring so the progress bar has a total.
        total = 0
        for folder in active:
            plans[folder.pk] = plan_new_uids(mailbox, folder, session)
            total += len(plans[folder.pk][1])
            lease.renew()
        Mailbox.objects.filter(pk=mailbox.pk).update(progress_total=total, progress_done=0)
    for folder in active:
        folder_report = FolderReport(name=folder.name)
        report.folders.append(folder_report)
        sync_folder(
            mailbox,
            folder,
            session,
            lease,
            folder_report,
            batch_size=batch_size,
            initial=initial,
            plan=plans.get(folder.pk),
        )
        lease.renew()
    if only is None:
        forget_vanished_folders(mailbox)
