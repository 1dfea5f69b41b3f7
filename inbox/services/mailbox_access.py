"""Services for a shared mailbox's administration from its settings page (docs/product.md §2.7):
who it is granted to, whether it opens tickets and where it forwards what it cannot place.

Only those who manage the mailbox (inbox/permissions.py can_manage_mailbox: admins for a shared
one) may call them; each change is written to the "relay.audit" log, like the admin site's.
A grant that goes away also takes away the primary choice of whoever can no longer read the
mailbox (docs/product.md §2.7 item 2)."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from crm.normalize import normalize_email

from ..models import Mailbox, PrimaryMailbox
from ..permissions import can_manage_mailbox, readable_mailboxes

audit = logging.getLogger("relay.audit")


def _check(user, mailbox: Mailbox) -> None:
    if mailbox.kind != Mailbox.Kind.SHARED:
        raise ValidationError("Only a shared mailbox is granted to people and groups.")
    if user is not None and not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not change this mailbox.")


def _who(user) -> str:
    return f"user={user.pk}" if user is not None else "an operator"


def _audit_grant(mailbox: Mailbox, change: str, whom, user) -> None:
    """One audit line per grant change: "mailbox=7 support@x granted to user=3 by ..."."""
    audit.warning(
        "mailbox=%s %s %s=%s by %s", mailbox.pk, mailbox.email_address, change, whom.pk, _who(user)
    )


def mailbox_grants(mailbox: Mailbox) -> dict:
    """Who reads the mailbox: the users and the groups it is granted to."""
    return {
        "users": list(mailbox.granted_users.order_by("first_name", "last_name", "username")),
        "groups": list(mailbox.granted_groups.order_by("name")),
    }


@transaction.atomic
def mailbox_grant(*, user, mailbox: Mailbox, grantee=None, group: Group | None = None) -> None:
    """Grant the shared mailbox to a user or a group (both may be given)."""
    _check(user, mailbox)
    if grantee is None and group is None:
        raise ValidationError("Pick a person or a group.")
    if grantee is not None:
        if not grantee.is_active:
            raise ValidationError("This account is deactivated.")
        mailbox.granted_users.add(grantee)
        _audit_grant(mailbox, "granted to user", grantee, user)
    if group is not None:
        mailbox.granted_groups.add(group)
        _audit_grant(mailbox, "granted to group", group, user)


@transaction.atomic
def mailbox_revoke(*, user, mailbox: Mailbox, grantee=None, group: Group | None = None) -> int:
    """Take the grant away from a user or a group; whoever can no longer read the mailbox
    loses it as their primary one. Returns how many primary choices were cleared."""
    _check(user, mailbox)
    if grantee is not None:
        mailbox.granted_users.remove(grantee)
        _audit_grant(mailbox, "revoked from user", grantee, user)
    if group is not None:
        mailbox.granted_groups.remove(group)
        _audit_grant(mailbox, "revoked from group", group, user)
    return mailbox_forget_lost_primaries(mailbox=mailbox)


def mailbox_forget_lost_primaries(*, mailbox: Mailbox) -> int:
    """Clear the primary choice of every user who chose `mailbox` but can no longer read it
    (after a grant was revoked here, in the admin site, or a user left a group)."""
    User = get_user_model()
    choosers = User.objects.filter(primary_mailbox__mailbox=mailbox)
    lost = [u.pk for u in choosers if not readable_mailboxes(u).filter(pk=mailbox.pk).exists()]
    if not lost:
        return 0
    deleted, _ = PrimaryMailbox.objects.filter(user_id__in=lost, mailbox=mailbox).delete()
    return deleted


@transaction.atomic
def mailbox_update_support(
    *,
    user,
    mailbox: Mailbox,
    create_tickets: bool,
    forward_unplaced_to: str,
    send_acknowledgements: bool | None = None,
) -> Mailbox:
    """Whether new mail opens tickets, whether a new ticket is acknowledged to its customer
    (docs/product.md §4.2; None leaves it as it is) and the internal address mail the rules
    cannot place is forwarded to (shared mailboxes only: docs/reliability.md C-22)."""
    _check(user, mailbox)
    forward = (forward_unplaced_to or "").strip()
    if forward:
        try:
            forward = normalize_email(forward)
        except ValidationError as exc:
            raise ValidationError(
                {"forward_unplaced_to": "Enter a valid email address, like team@example.com."}
            ) from exc
        if forward == mailbox.email_address:
            raise ValidationError(
                {"forward_unplaced_to": "Forwarding to the mailbox itself would loop."}
            )
    changed = []
    if mailbox.create_tickets != bool(create_tickets):
        changed.append(f"create_tickets={bool(create_tickets)}")
    if send_acknowledgements is None:
        send_acknowledgements = mailbox.send_acknowledgements
    if mailbox.send_acknowledgements != bool(send_acknowledgements):
        changed.append(f"send_acknowledgements={bool(send_acknowledgements)}")
    if mailbox.forward_unplaced_to != forward:
        changed.append(f"forward_unplaced_to={forward or '(none)'}")
    mailbox.create_tickets = bool(create_tickets)
    mailbox.forward_unplaced_to = forward
    mailbox.send_acknowledgements = bool(send_acknowledgements)
    mailbox.save(
        update_fields=[
            "create_tickets",
            "forward_unplaced_to",
            "send_acknowledgements",
            "updated_at",
        ]
    )
    if changed:
        audit.warning(
            "mailbox=%s %s: %s set by %s",
            mailbox.pk,
            mailbox.email_address,
            ", ".join(changed),
            _who(user),
        )
    return mailbox


# --- exclusion patterns (docs/product.md §4.1 rule 5), added after a dry run ------------------

_NOT_IN_PATTERNS = set(' \t\r\n\x00<>",;:()\\')


def clean_exclusion_pattern(pattern: str) -> str:
    """A glob on an address (`*@noreply.*`) or a domain (`*.example.org`), lower case."""
    pattern = (pattern or "").strip().lower()
    if not pattern:
        raise ValidationError({"pattern": "Enter a pattern, like *@noreply.example.com."})
    if len(pattern) > 320 or set(pattern) & _NOT_IN_PATTERNS:
        raise ValidationError(
            {"pattern": "Only an address or domain with * and ? wildcards, no spaces."}
        )
    if pattern.count("@") > 1:
        raise ValidationError({"pattern": "One @ at most: an address or a domain."})
    if pattern.strip("*?@.") == "":
        raise ValidationError({"pattern": "This pattern would exclude every sender."})
    return pattern


def exclusion_dry_run(*, user, mailbox: Mailbox, pattern: str) -> list[dict]:
    """What `pattern` would exclude among the mailbox's last 100 messages, before it is saved.
    Only this mailbox's mail: an admin never sees personal mail (docs/product.md §2.2)."""
    from .triage import exclusion_patterns_preview

    _check(user, mailbox)
    return exclusion_patterns_preview(
        patterns=[clean_exclusion_pattern(pattern)], mailbox=mailbox, limit=100
    )


@transaction.atomic
def exclusion_pattern_add(*, user, mailbox: Mailbox, pattern: str, note: str = ""):
    """Save an exclusion pattern (for every mailbox), after its dry run on `mailbox`."""
    from ..models import ExclusionPattern

    _check(user, mailbox)
    pattern = clean_exclusion_pattern(pattern)
    if ExclusionPattern.objects.filter(pattern=pattern).exists():
        raise ValidationError({"pattern": "This pattern is on the list already."})
    saved = ExclusionPattern.objects.create(pattern=pattern, note=(note or "").strip()[:200])
    audit.warning("exclusion pattern %r added by %s", pattern, _who(user))
    return saved


@transaction.atomic
def exclusion_pattern_remove(*, user, mailbox: Mailbox, pattern_id: int) -> str:
    from ..models import ExclusionPattern

    _check(user, mailbox)
    saved = ExclusionPattern.objects.filter(pk=pattern_id).first()
    if saved is None:
        raise ValidationError("This pattern is not on the list.")
    saved.delete()
    audit.warning("exclusion pattern %r removed by %s", saved.pattern, _who(user))
    return saved.pattern


# --- Email API senders (docs/product.md §6; docs/reliability.md C-17) ------------------------


def _sender(mailbox: Mailbox, sender_id):
    from ..models import EmailApiSender

    try:
        return EmailApiSender.objects.get(mailbox=mailbox, pk=int(sender_id or 0))
    except (EmailApiSender.DoesNotExist, ValueError) as exc:
        raise ValidationError("This sender is not on the list.") from exc


@transaction.atomic
def api_sender_add(*, user, mailbox: Mailbox, address: str, note: str = ""):
    """Allow an address to send Email API documents to this mailbox."""
    from ..models import EmailApiSender

    _check(user, mailbox)
    try:
        address = normalize_email(address or "")
    except ValidationError as exc:
        raise ValidationError(
            {"address": "Enter a valid email address, like forms@example.com."}
        ) from exc
    if EmailApiSender.objects.filter(mailbox=mailbox, address=address).exists():
        raise ValidationError({"address": "This sender is on the list already."})
    sender = EmailApiSender.objects.create(
        mailbox=mailbox, address=address, note=(note or "").strip()[:200]
    )
    audit.warning(
        "mailbox=%s %s: Email API sender %s added by %s",
        mailbox.pk,
        mailbox.email_address,
        address,
        _who(user),
    )
    return sender


@transaction.atomic
def api_sender_new_secret(*, user, mailbox: Mailbox, sender_id) -> tuple[object, str]:
    """Give the sender a new random secret: returned once to be shown once, kept only as a
    hash (docs/reliability.md C-17). The previous secret stops working."""
    import secrets

    _check(user, mailbox)
    sender = _sender(mailbox, sender_id)
    secret = secrets.token_urlsafe(24)
    sender.set_secret(secret)
    sender.save(update_fields=["secret_hash"])
    audit.warning(
        "mailbox=%s %s: Email API sender %s given a new secret by %s",
        mailbox.pk,
        mailbox.email_address,
        sender.address,
        _who(user),
    )
    return sender, secret


@transaction.atomic
def api_sender_remove(*, user, mailbox: Mailbox, sender_id) -> str:
    _check(user, mailbox)
    sender = _sender(mailbox, sender_id)
    sender.delete()
    audit.warning(
        "mailbox=%s %s: Email API sender %s removed by %s",
        mailbox.pk,
        mailbox.email_address,
        sender.address,
        _who(user),
    )
    return sender.address


@transaction.atomic
def matching_precedence_set(*, user, mailbox: Mailbox, precedence: str):
    """Lead first or contact first, when an address belongs to both (docs/product.md §4.1; for
    every mailbox). Changed from a shared mailbox's page by an admin."""
    from ..models import MatchingSettings

    _check(user, mailbox)
    if precedence not in MatchingSettings.Precedence.values:
        raise ValidationError({"precedence": "Pick contact first or lead first."})
    row = MatchingSettings.load()
    if row.precedence != precedence:
        row.precedence = precedence
        row.save(update_fields=["precedence", "updated_at"])
        audit.warning("matching precedence set to %s by %s", precedence, _who(user))
    return row
