"""`manage.py demo_data`: a small, believable company to try Relay CRM with.

The cast comes from `demo.corpus` (its staff become the users, its companies and people the
accounts, contacts and leads), topped up with a few companies that have no mail yet, and the
corpus's mail is imported into the shared support mailbox. Tickets are made for the ticket
references that mail carries, in order, so that TKT-1001 in a staff reply is the ticket about
that conversation.

Idempotent: every record is looked up by a natural key (username, account name, contact
address, lead name, ticket subject, opportunity name, mailbox address) and created only when
missing, and the mail import skips content already stored, so `make run` can call it on every
start without duplicating anything or undoing changes made in the app. Nothing here opens a
network connection: the demo mailboxes point at a reserved `.invalid` host and are paused.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from connector.sync.importer import import_messages
from crm import services as crm_services
from crm.models import (
    Account,
    Contact,
    ContactEmail,
    Counter,
    Lead,
    Opportunity,
    StaffEmail,
    Ticket,
)
from demo import corpus
from inbox.models import Mailbox, Message, OutboxEntry, PrimaryMailbox, Thread, ThreadEvent
from inbox.selectors.reports import ours_q
from inbox.services.mailboxes import mailbox_set_primary
from notes.access import Target
from notes.models import Note
from notes.services import note_create

DEMO_PASSWORD = "demo"
SUPPORT_ADDRESS = "support@relay.example"  # the address the corpus writes to
# Enough mail for a few months of threads, and 14 ticket references; the same every time.
DEMO_MAIL_COUNT = 300  # "a few hundred": threads, HTML, attachments, 7 languages
DEMO_MAIL_SEED = 1
# RFC 2606 reserves .invalid: the name can never resolve, so a demo mailbox that is resumed by
# mistake fails at once instead of connecting to someone's real server.
PLACEHOLDER_IMAP_HOST = "imap.example.invalid"
PLACEHOLDER_SMTP_HOST = "smtp.example.invalid"

# The corpus's staff, by address: username, superuser. All four are users so that mail from
# any of them counts as staff mail, never as a new contact.
STAFF = {
    "maya.chen@relay.example": ("demo", True),
    "lukas.berger@relay.example": ("lukas", False),
    "sofia.alvarez@relay.example": ("sofia", False),
    "daniel.okafor@relay.example": ("daniel", False),
}

# Customers with no mail in the demo corpus yet: name, domains, phone.
EXTRA_ACCOUNTS = [
    ("Northwind Traders", ["northwind.example", "northwindtraders.example"], "+44 20 7946 0101"),
    ("Contoso Pharmaceuticals", ["contoso.example"], "+1 425 555 0134"),
    ("Fabrikam Manufacturing", ["fabrikam.example"], "+1 312 555 0175"),
    ("Tailspin Toys", ["tailspintoys.example"], "+44 161 496 0022"),
    ("Woodgrove Bank", ["woodgrovebank.example"], "+1 646 555 0122"),
    ("Blue Yonder Airlines", ["blueyonderairlines.example"], "+353 1 555 0199"),
    ("Trey Research", ["treyresearch.example"], "+1 617 555 0181"),
]

# first, last, title, account, addresses
EXTRA_CONTACTS = [
    (
        "Nancy",
        "Davolio",
        "Head of Purchasing",
        "Northwind Traders",
        ["nancy.davolio@northwind.example", "nancy@northwindtraders.example"],
    ),
    (
        "Andrew",
        "Fuller",
        "Operations Director",
        "Northwind Traders",
        ["andrew.fuller@northwind.example"],
    ),
    (
        "Janet",
        "Leverling",
        "Accounts Payable",
        "Northwind Traders",
        ["janet.leverling@northwind.example"],
    ),
    ("Priya", "Raman", "IT Manager", "Contoso Pharmaceuticals", ["priya.raman@contoso.example"]),
    (
        "Ben",
        "Walters",
        "Lab Systems Lead",
        "Contoso Pharmaceuticals",
        ["ben.walters@contoso.example"],
    ),
    ("Chloe", "Martin", "Procurement", "Contoso Pharmaceuticals", ["chloe.martin@contoso.example"]),
    ("Hiro", "Tanaka", "Plant Manager", "Fabrikam Manufacturing", ["hiro.tanaka@fabrikam.example"]),
    ("Grace", "Obi", "Quality Engineer", "Fabrikam Manufacturing", ["grace.obi@fabrikam.example"]),
    ("Liam", "Walsh", "Buyer", "Fabrikam Manufacturing", ["liam.walsh@fabrikam.example"]),
    ("Tom", "Berry", "Founder", "Tailspin Toys", ["tom@tailspintoys.example"]),
    ("Lucy", "Hart", "Customer Service Lead", "Tailspin Toys", ["lucy.hart@tailspintoys.example"]),
    (
        "Claire",
        "Dubois",
        "Compliance Officer",
        "Woodgrove Bank",
        ["claire.dubois@woodgrovebank.example"],
    ),
    (
        "Victor",
        "Stone",
        "Head of IT Security",
        "Woodgrove Bank",
        ["victor.stone@woodgrovebank.example"],
    ),
    (
        "Sean",
        "Murphy",
        "Fleet Operations",
        "Blue Yonder Airlines",
        ["sean.murphy@blueyonderairlines.example"],
    ),
    (
        "Aoife",
        "Byrne",
        "Procurement Lead",
        "Blue Yonder Airlines",
        ["aoife.byrne@blueyonderairlines.example"],
    ),
    ("Isabel", "Cruz", "Research Director", "Trey Research", ["isabel.cruz@treyresearch.example"]),
    ("Noah", "Fischer", "Data Analyst", "Trey Research", ["noah.fischer@treyresearch.example"]),
    ("Zoe", "Adams", "Lab Coordinator", "Trey Research", ["zoe.adams@treyresearch.example"]),
]

# first, last, company, status, owner (username), addresses
EXTRA_LEADS = [
    (
        "Laura",
        "Bennett",
        "Fourth Coffee",
        Lead.Status.NEW,
        "lukas",
        ["laura.bennett@fourthcoffee.example"],
    ),
    (
        "Diego",
        "Ramos",
        "Graphic Design Institute",
        Lead.Status.CONTACTED,
        "sofia",
        ["diego@graphicdesigninstitute.example"],
    ),
    (
        "Arjun",
        "Nair",
        "City Power & Light",
        Lead.Status.QUALIFIED,
        "demo",
        ["arjun.nair@cpandl.example"],
    ),
    (
        "Julia",
        "Weber",
        "Humongous Insurance",
        Lead.Status.CONTACTED,
        "lukas",
        ["julia.weber@humongousinsurance.example"],
    ),
    ("Tariq", "Aziz", "VanArsdel", Lead.Status.LOST, "sofia", ["tariq.aziz@vanarsdel.example"]),
    (
        "Nora",
        "Lindqvist",
        "Wingtip Toys",
        Lead.Status.NEW,
        "demo",
        ["nora.lindqvist@wingtiptoys.example"],
    ),
    # Converted below: becomes a contact at a new account; the lead keeps pointing at both.
    (
        "Paul",
        "Novak",
        "Southridge Video",
        Lead.Status.QUALIFIED,
        "sofia",
        ["paul.novak@southridgevideo.example"],
    ),
]
CONVERTED_LEAD = ("Paul", "Novak", "Southridge Video")
CORPUS_LEAD_STATUSES = [Lead.Status.CONTACTED, Lead.Status.QUALIFIED]

# The corpus's first ticket is TKT-1001 and our series starts at 1000: this one, with no mail,
# takes 1000 so the corpus's references land on the tickets made for them.
FIRST_TICKET = {
    "subject": "Set up the shared support mailbox",
    "description": "Connect support@relay.example, pick Inbox and Sent, grant it to the team.",
    "status": Ticket.Status.RESOLVED,
    "priority": Ticket.Priority.NORMAL,
    "assignee": "demo",
}
# Varied, and the same on every machine: (status, priority, assignee) by ticket order.
TICKET_STATES = [
    (Ticket.Status.OPEN, Ticket.Priority.HIGH, "daniel"),
    (Ticket.Status.PENDING, Ticket.Priority.NORMAL, "lukas"),
    (Ticket.Status.RESOLVED, Ticket.Priority.NORMAL, "sofia"),
    (Ticket.Status.OPEN, Ticket.Priority.URGENT, "demo"),
    (Ticket.Status.CLOSED, Ticket.Priority.LOW, "daniel"),
    (Ticket.Status.OPEN, Ticket.Priority.NORMAL, None),
]

S = Opportunity.Stage
# name, account, contact address, stage, amount, days to close, owner
OPPORTUNITIES = [
    (
        "Acme Logistics: warehouse scanners rollout",
        "Acme Logistics Ltd",
        "james.miller@acme-logistics.example",
        S.PROPOSAL,
        "48000.00",
        30,
        "demo",
    ),
    (
        "Bright Harbor: clinic supplies framework",
        "Bright Harbor Health",
        "m.reed@brightharbor.example",
        S.NEGOTIATION,
        "125000.00",
        21,
        "sofia",
    ),
    (
        "Nordwind: maintenance contract 2027",
        "Nordwind Maschinenbau GmbH",
        "juergen.weiss@nordwind-maschinenbau.example",
        S.QUALIFICATION,
        "36000.00",
        60,
        "lukas",
    ),
    (
        "Sakura Denki: EDI integration",
        "Sakura Denki K.K.",
        "k.takahashi@sakura-denki.example",
        S.PROSPECTING,
        "90000.00",
        120,
        "demo",
    ),
    (
        "Lefèvre & Fils: customs brokerage",
        "Lefèvre & Fils",
        "amelie.lefevre@lefevre-fils.example",
        S.WON,
        "22500.00",
        -10,
        "lukas",
    ),
    (
        "Woodgrove: branch kiosk pilot",
        "Woodgrove Bank",
        "victor.stone@woodgrovebank.example",
        S.PROPOSAL,
        "64000.00",
        45,
        "sofia",
    ),
    (
        "Volga Trade: cold-chain lanes",
        "Volga Trade LLC",
        "d.ivanov@volga-trade.example",
        S.LOST,
        "15000.00",
        -30,
        "demo",
    ),
    (
        "Trey Research: analytics seats",
        "Trey Research",
        "isabel.cruz@treyresearch.example",
        S.QUALIFICATION,
        "18750.00",
        75,
        "daniel",
    ),
]


def demo_start() -> dt.datetime:
    """Midnight (UTC) of the day the demo is loaded: its mail runs up to yesterday, so the inbox,
    the Reports page's default 30 days and the snoozes look like a working week, not a fixed
    past. The same day always gives the same mail (demo/corpus.py is seeded)."""
    return dt.datetime.combine(timezone.now().astimezone(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)


def demo_mail() -> list[corpus.GeneratedMessage]:
    return list(
        corpus.generate(
            DEMO_MAIL_COUNT,
            seed=DEMO_MAIL_SEED,
            start=demo_start(),
            mailbox_address=SUPPORT_ADDRESS,
        )
    )


def mail_tickets(messages: list[corpus.GeneratedMessage]) -> list[tuple[int, str, str]]:
    """(number, subject, customer address) of each ticket the demo mail refers to, by number.
    The ticket is about the request the first staff reply carrying its reference answers."""
    by_id = {m.message_id: m for m in messages}
    tickets: dict[str, tuple[int, str, str]] = {}
    for message in messages:
        if not message.ticket or message.ticket in tickets:
            continue
        request = by_id.get(message.in_reply_to, message)
        number = int(message.ticket.rpartition("-")[2])
        tickets[message.ticket] = (number, request.subject, request.sender)
    return sorted(tickets.values())


def import_demo_mail(mailbox: Mailbox, messages: list[corpus.GeneratedMessage]) -> int:
    """Import the demo mail into `mailbox` through the same ingest as synced mail: one call per
    folder and set of flags (each call is a few queries per batch, whatever its size). Content
    already stored is skipped, so a second run adds nothing. Returns the messages stored."""
    groups: dict[tuple[str, tuple[str, ...]], list[bytes]] = {}
    for message in messages:
        groups.setdefault((message.folder, message.flags), []).append(message.raw)
    stored = 0
    for (folder, flags), raws in groups.items():
        stored += import_messages(mailbox, raws, folder_name=folder, flags=flags).stored
    return stored


# The team at work on the support inbox (docs/product.md §7.8): for the newest conversations,
# (assignee or None, status, who did it). The imported mail is history (Done); these make the
# views lived-in: some of everyone's, some unassigned, some waiting, snoozed and done.
TEAM_PLAN = [
    (None, "open", None),
    ("lukas", "open", "sofia"),
    ("sofia", "open", "sofia"),
    (None, "open", None),
    ("daniel", "waiting", "daniel"),
    ("demo", "open", "lukas"),
    ("lukas", "snoozed", "lukas"),
    ("sofia", "waiting", "sofia"),
    (None, "open", None),
    ("daniel", "open", "demo"),
    ("demo", "snoozed", "demo"),
    ("lukas", "done", "lukas"),
    ("sofia", "done", "daniel"),
    ("demo", "waiting", "demo"),
    (None, "open", None),
    ("daniel", "done", "daniel"),
]


def team_at_work(mailbox: Mailbox, users: dict) -> int:
    """Give the newest conversations of `mailbox` owners, states and timelines, once: a second
    run (or a team that already changed something) leaves them as they are. Returns the
    conversations changed."""
    if ThreadEvent.objects.filter(thread__mailbox=mailbox).exists():
        return 0
    now = timezone.now()
    threads = list(
        Thread.objects.filter(mailbox=mailbox).order_by("-last_message_at", "-pk")[: len(TEAM_PLAN)]
    )
    events = []
    for index, (thread, (owner, status, actor)) in enumerate(zip(threads, TEAM_PLAN, strict=False)):
        when = now - dt.timedelta(hours=len(TEAM_PLAN) - index)
        assignee = users.get(owner) if owner else None
        by = users.get(actor) if actor else None
        thread.assignee = assignee
        thread.status = status
        thread.status_changed_at = when
        thread.snoozed_until = (
            now + dt.timedelta(days=1 + index % 3) if status == "snoozed" else None
        )
        thread.closed_at = when if status == "done" else None
        if assignee is not None:
            events.append(
                ThreadEvent(
                    thread=thread,
                    actor=by,
                    kind=ThreadEvent.Kind.ASSIGNED,
                    data={"assignee": assignee.pk, "assignee_name": assignee.get_full_name()},
                    created_at=when - dt.timedelta(minutes=30),
                )
            )
        if status != "open":
            data = {"status": status}
            if thread.snoozed_until:
                data["until"] = thread.snoozed_until.isoformat()
            events.append(
                ThreadEvent(
                    thread=thread,
                    actor=by,
                    kind=ThreadEvent.Kind.STATUS,
                    data=data,
                    created_at=when,
                )
            )
    Thread.objects.bulk_update(
        threads, ["assignee", "status", "status_changed_at", "snoozed_until", "closed_at"]
    )
    ThreadEvent.objects.bulk_create(events + answered_and_closed(mailbox, users, skip=threads))
    return len(threads)


def answered_and_closed(mailbox: Mailbox, users: dict, *, skip) -> list[ThreadEvent]:
    """The history the corpus answered was closed by someone a few hours after our last reply,
    so the Reports page (docs/product.md §7.11) has closings and times to close to show.
    Whoever closed it also owns it. Events only for the conversations not in the team plan."""
    people = [users[name] for name in sorted(users) if users.get(name)]
    if not people:
        return []
    last_reply = (
        Message.objects.filter(ours_q(), thread=OuterRef("pk"), date__isnull=False)
        .order_by("-date")
        .values("date")[:1]
    )
    threads = list(
        Thread.objects.filter(mailbox=mailbox, status=Thread.Status.DONE)
        .exclude(pk__in=[t.pk for t in skip])
        .annotate(last_reply=Subquery(last_reply))
        .filter(last_reply__isnull=False)
        .order_by("pk")
    )
    events = []
    for thread in threads:
        who = people[thread.pk % len(people)]
        when = thread.last_reply + dt.timedelta(hours=1 + thread.pk % 20)
        thread.assignee, thread.closed_at, thread.status_changed_at = who, when, when
        events.append(
            ThreadEvent(
                thread=thread,
                actor=who,
                kind=ThreadEvent.Kind.STATUS,
                data={"status": "done"},
                created_at=when,
            )
        )
    Thread.objects.bulk_update(threads, ["assignee", "closed_at", "status_changed_at"])
    return events


class Command(BaseCommand):
    help = "Create demo users, records, mailboxes and mail (idempotent: safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Run even with RELAY_PRODUCTION=true (it creates a superuser 'demo'/'demo').",
        )

    def handle(self, *args, allow_production: bool = False, **options):
        if settings.PRODUCTION and not allow_production:
            raise CommandError(
                "Refusing to load demo data in production: it creates a superuser with a known "
                "password. Pass --allow-production if you really mean it."
            )
        with transaction.atomic():
            created = self.load()
        counts = {
            "users": get_user_model().objects.count(),
            "accounts": Account.objects.count(),
            "contacts": Contact.objects.count(),
            "leads": Lead.objects.count(),
            "tickets": Ticket.objects.count(),
            "opportunities": Opportunity.objects.count(),
            "mailboxes": Mailbox.objects.count(),
            "messages": Message.objects.count(),
        }
        summary = ", ".join(f"{n} {name}" for name, n in counts.items())
        verb = f"created {created} new records" if created else "already loaded, nothing added"
        self.stdout.write(f"Demo data {verb}. Now: {summary}.")
        self.stdout.write(f"Demo login: user 'demo', password '{DEMO_PASSWORD}' (a superuser).")

    def load(self) -> int:
        self.created = 0
        self.password_hash = None
        people = corpus.demo_people()
        messages = demo_mail()

        users = {}
        for person in people:
            if person.role == "staff":
                username, superuser = STAFF[person.email]
                users[username] = self.user(username, person, superuser)

        accounts = {}
        for company in corpus.demo_companies():
            accounts[company.name] = self.account(
                company.name, [company.domain], company.phone, company.website
            )
        for name, domains, phone in EXTRA_ACCOUNTS:
            accounts[name] = self.account(name, domains, phone, f"https://www.{domains[0]}/")

        contacts = {}
        for person in people:
            if person.role == "contact":
                account = accounts.get(person.company)
                contacts[person.email] = self.contact(
                    person.first_name,
                    person.last_name,
                    person.title,
                    account,
                    [person.email],
                    phone=person.phone,
                )
        for first, last, title, account, emails in EXTRA_CONTACTS:
            contact = self.contact(first, last, title, accounts[account], emails)
            contacts.update(dict.fromkeys(emails, contact))

        owners = itertools.cycle(["lukas", "sofia", "demo"])
        statuses = itertools.cycle(CORPUS_LEAD_STATUSES)
        for person in people:
            if person.role == "lead":
                self.lead(
                    person.first_name,
                    person.last_name,
                    person.company,
                    next(statuses),
                    next(owners),
                    [person.email],
                    users=users,
                )
        for row in EXTRA_LEADS:
            self.lead(*row, users=users)

        tickets_line_up = self.tickets(messages, users, accounts, contacts)
        self.opportunities(users, accounts, contacts)
        self.mailboxes(users, messages, import_mail=tickets_line_up)
        self.notes(users)
        return self.created

    def user(self, username: str, person: corpus.Person, superuser: bool):
        user, created = get_user_model().objects.get_or_create(
            username=username,
            defaults={
                "first_name": person.first_name,
                "last_name": person.last_name,
                "email": person.email,
                "is_staff": True,
                "is_superuser": superuser,
            },
        )
        if created:
            # Only on creation: a password changed in the app survives the next `make run`.
            # One hash for all demo users: the hasher is slow on purpose, and they share the
            # password anyway.
            if self.password_hash is None:
                self.password_hash = make_password(DEMO_PASSWORD)
            user.password = self.password_hash
            user.save(update_fields=["password"])
            self.created += 1
        # Add the staff address if missing, keep any the user added since.
        mine = set(StaffEmail.objects.filter(user=user).values_list("email", flat=True))
        if person.email not in mine:
            crm_services.staff_set_confirmed_emails(user=user, emails=sorted(mine | {person.email}))
        return user

    def account(self, name, domains, phone, website):
        account = Account.objects.filter(name=name).first()
        if account is None:
            account = crm_services.account_create(
                name=name, domains=domains, phone=phone, website=website
            )
            self.created += 1
        return account

    def contact(self, first, last, title, account, emails, phone=""):
        known = ContactEmail.objects.filter(email=emails[0]).select_related("contact").first()
        if known is not None:
            return known.contact
        self.created += 1
        return crm_services.contact_create(
            first_name=first,
            last_name=last,
            title=title,
            account=account,
            phone=phone,
            emails=emails,
        )

    def lead(self, first, last, company, status, owner, emails, *, users):
        if Lead.objects.filter(first_name=first, last_name=last, company_name=company).exists():
            return
        lead = crm_services.lead_create(
            first_name=first,
            last_name=last,
            company_name=company,
            status=status,
            owner=users[owner],
            emails=emails,
        )
        self.created += 1
        if (first, last, company) == CONVERTED_LEAD:
            crm_services.lead_convert(lead=lead)

    def tickets(self, messages, users, accounts, contacts) -> bool:
        """Make the tickets, and say whether each has the number the demo mail refers to it by
        (true on a fresh database; false if tickets were made before the first demo load, when
        importing the mail would file it on the wrong tickets)."""
        first = Ticket.objects.filter(subject=FIRST_TICKET["subject"]).first()
        if first is None:
            first = crm_services.ticket_create(
                **{**FIRST_TICKET, "assignee": users[FIRST_TICKET["assignee"]]}
            )
            self.created += 1
        lined_up = first.number == crm_services.FIRST_NUMBER["ticket"]
        states = itertools.cycle(TICKET_STATES)
        top = first.number
        for number, subject, customer in mail_tickets(messages):
            status, priority, assignee = next(states)
            # The mail says [TKT-n]: the ticket must carry exactly that number. Several
            # conversations may share a subject, so they are told apart by number.
            ticket = Ticket.objects.filter(number=number).first()
            if ticket is None:
                contact = contacts.get(customer)
                ticket = Ticket.objects.create(
                    number=number,
                    subject=subject,
                    status=status,
                    priority=priority,
                    contact=contact,
                    account=contact.account if contact else None,
                    assignee=users.get(assignee) if assignee else None,
                    description=f"Opened from a message by {customer}.",
                )
                self.created += 1
            lined_up = lined_up and ticket.subject == subject
            top = max(top, number)
        # New tickets made in the app continue after the demo's numbers.
        Counter.objects.filter(name="ticket", value__lte=top).update(value=top + 1)
        return lined_up

    def opportunities(self, users, accounts, contacts) -> None:
        today = timezone.localdate()
        for name, account, contact, stage, amount, days, owner in OPPORTUNITIES:
            if Opportunity.objects.filter(name=name).exists():
                continue
            crm_services.opportunity_create(
                name=name,
                account=accounts[account],
                contact=contacts[contact],
                stage=stage,
                amount=Decimal(amount),
                close_date=today + dt.timedelta(days=days),
                owner=users[owner],
            )
            self.created += 1

    def mailboxes(self, users, messages, *, import_mail: bool) -> None:
        demo = users["demo"]
        self.mailbox(
            email_address=demo.email,
            kind=Mailbox.Kind.PERSONAL,
            owner=demo,
            display_name=demo.get_full_name(),
        )
        # No automatic tickets: the demo's tickets are made above, numbered to match the mail.
        support = self.mailbox(
            email_address=SUPPORT_ADDRESS,
            kind=Mailbox.Kind.SHARED,
            owner=None,
            display_name="Relay Support",
        )
        support.granted_users.add(*users.values())
        # The support mailbox holds the demo mail: make it primary so a newcomer sees mail at
        # once (the personal one is a switch away).
        for user in users.values():
            if not PrimaryMailbox.objects.filter(user=user).exists():
                mailbox_set_primary(user=user, mailbox=support)
        if import_mail:
            self.created += import_demo_mail(support, messages)
            self.created += team_at_work(support, users)
            self.outbox(support, users)
        else:
            self.stderr.write(
                "Demo mail not imported: tickets existed before the demo data, so its ticket "
                "references would point at the wrong tickets."
            )

    def notes(self, users) -> None:
        """A team at work: internal notes on a ticket, an account, a lead and support
        conversations, with mentions, so the bell and Mentions have something in them
        (docs/product.md §7.9, §7.10). Only once: the team's own notes are never touched."""
        if Note.objects.exists():
            return
        tickets = list(Ticket.objects.order_by("-number")[:2])
        threads = list(
            Thread.objects.filter(mailbox__email_address=SUPPORT_ADDRESS)
            .exclude(last_message_at=None)
            .order_by("-last_message_at")[:2]
        )
        account = Account.objects.order_by("pk").first()
        lead = Lead.objects.order_by("pk").first()
        plan = []
        if tickets:
            ticket = Target("ticket", tickets[0])
            plan += [
                (
                    "sofia",
                    ticket,
                    "Called the customer: it only happens since their upgrade last week. "
                    "@lukas can you check the release notes?",
                ),
                (
                    "lukas",
                    ticket,
                    "The new version changed the defaults (https://relay.example/changelog). "
                    "Rolled their setting back; @demo please confirm with them before closing.",
                ),
            ]
        if len(tickets) > 1:
            plan.append(("demo", Target("ticket", tickets[1]), "Waiting for their logs."))
        for thread in threads:
            plan.append(
                (
                    "lukas",
                    Target("thread", thread),
                    "@sofia this looks like the same request as last week: same answer? "
                    "@demo FYI, they asked for a call-back.",
                )
            )
        if account is not None:
            plan.append(
                (
                    "demo",
                    Target("account", account),
                    "Renewal talks start in March. The budget owner is the CFO, not IT.",
                )
            )
        if lead is not None:
            plan.append(
                ("sofia", Target("lead", lead), "Met at the trade fair. @daniel knows them.")
            )
        for author, target, body in plan:
            if author in users:
                note_create(author=users[author], target=target, body=body)
                self.created += 1

    def outbox(self, support: Mailbox, users) -> None:
        """Two replies that did not go out, so the Outbox page and its banner have something to
        show (docs/product.md §5.4): one refused by the server (an unknown address), one whose
        outcome is unknown. Rows only: nothing is sent, the demo mailboxes are paused."""
        received = list(
            Message.objects.filter(mailbox=support)
            .exclude(from_address=SUPPORT_ADDRESS)
            .order_by("-date", "-pk")[:2]
        )
        problems = [
            (
                OutboxEntry.State.FAILED,
                "every recipient was refused: {to}: 550 5.1.1 <{to}>: Recipient address "
                "rejected: User unknown in virtual mailbox table",
            ),
            (
                OutboxEntry.State.VERIFY,
                "the connection was lost after the message was sent: Connection reset by peer",
            ),
        ]
        for index, (original, (state, error)) in enumerate(zip(received, problems, strict=False)):
            message_id = f"demo-outbox-{index}@relay.example"
            if OutboxEntry.objects.filter(message_id=message_id).exists():
                continue
            # A typo in the address makes the refusal believable.
            to = (
                original.from_address.replace("@", "s@", 1) if index == 0 else original.from_address
            )
            OutboxEntry.objects.create(
                mailbox=support,
                created_by=users["demo"],
                state=state,
                message_id=message_id,
                from_address=SUPPORT_ADDRESS,
                to=[to],
                subject=f"Re: {original.subject}"[:900],
                text_body="Thanks, we are on it and will get back to you today.\n",
                in_reply_to=original.message_id,
                references=f"<{original.message_id}>",
                reply_to_message=original,
                attempts=1,
                last_error=error.format(to=to),
            )
            self.created += 1

    def mailbox(self, *, email_address: str, **fields) -> Mailbox:
        mailbox = Mailbox.objects.filter(email_address=email_address).first()
        if mailbox is not None:
            return mailbox
        mailbox = Mailbox(
            email_address=email_address,
            imap_host=PLACEHOLDER_IMAP_HOST,
            smtp_host=PLACEHOLDER_SMTP_HOST,
            active_folders=["INBOX", "Sent"],
            # Paused: nothing must try to reach the placeholder host; resume it after pointing
            # it at a real server in the admin.
            state=Mailbox.State.PAUSED,
            sync_from=demo_start().date() - dt.timedelta(days=180),
            **fields,
        )
        mailbox.full_clean()
        mailbox.save()
        self.created += 1
        return mailbox
