"""`manage.py demo_data`: a small, believable company to try Relay CRM with.

Idempotent: every record is looked up by a natural key (username, account name, contact
address, lead name, ticket subject, opportunity name, mailbox address) and created only when
missing, so `make run` can call it on every start without duplicating anything or undoing
changes made through the app. Nothing here opens a network connection: the demo mailboxes point
at a reserved `.invalid` host and are paused.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from crm import services as crm_services
from crm.models import Account, Contact, ContactEmail, Lead, Opportunity, StaffEmail, Ticket
from inbox.models import Mailbox, PrimaryMailbox
from inbox.services import mailbox_set_primary

DEMO_PASSWORD = "demo"
OUR_DOMAIN = "relay-demo.example"
# RFC 2606 reserves .invalid: the name can never resolve, so a demo mailbox that is resumed by
# mistake fails at once instead of connecting to someone's real server.
PLACEHOLDER_IMAP_HOST = "imap.example.invalid"
PLACEHOLDER_SMTP_HOST = "smtp.example.invalid"

USERS = [
    # username, first, last, superuser, staff addresses
    ("demo", "Dana", "Demo", True, [f"demo@{OUR_DOMAIN}", f"dana.demo@{OUR_DOMAIN}"]),
    ("maria", "Maria", "Lopez", False, [f"maria@{OUR_DOMAIN}"]),
    ("james", "James", "Okafor", False, [f"james@{OUR_DOMAIN}"]),
]

# name, domains, phone
ACCOUNTS = [
    ("Northwind Traders", ["northwind.example", "northwindtraders.example"], "+44 20 7946 0101"),
    ("Contoso Pharmaceuticals", ["contoso.example"], "+1 425 555 0134"),
    ("Fabrikam Manufacturing", ["fabrikam.example"], "+1 312 555 0175"),
    ("Tailspin Toys", ["tailspintoys.example"], "+44 161 496 0022"),
    ("Wide World Importers", ["wideworldimporters.example"], "+1 206 555 0190"),
    ("Adventure Works Cycles", ["adventure-works.example"], "+49 30 901820"),
    ("Alpine Ski House", ["alpineskihouse.example"], "+41 27 555 0110"),
    ("Coho Winery", ["cohowinery.example"], "+1 707 555 0148"),
    ("Litware", ["litware.example"], "+1 512 555 0163"),
    ("Proseware", ["proseware.example"], "+44 113 496 0577"),
    ("Woodgrove Bank", ["woodgrovebank.example"], "+1 646 555 0122"),
    ("Blue Yonder Airlines", ["blueyonderairlines.example"], "+353 1 555 0199"),
    ("Lucerne Publishing", ["lucernepublishing.example"], "+44 1865 555 010"),
    ("Margie's Travel", ["margiestravel.example"], "+61 2 5550 1234"),
    ("Trey Research", ["treyresearch.example"], "+1 617 555 0181"),
]

# first, last, title, account (None: a contact of no account), addresses
CONTACTS = [
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
    ("Tom", "Berry", "Founder", "Tailspin Toys", ["tom@tailspintoys.example"]),
    ("Lucy", "Hart", "Customer Service Lead", "Tailspin Toys", ["lucy.hart@tailspintoys.example"]),
    (
        "Samir",
        "Haddad",
        "Logistics Manager",
        "Wide World Importers",
        ["samir.haddad@wideworldimporters.example"],
    ),
    (
        "Elena",
        "Petrova",
        "Finance Director",
        "Wide World Importers",
        ["elena.petrova@wideworldimporters.example"],
    ),
    (
        "Kai",
        "Schmidt",
        "Head of E-commerce",
        "Adventure Works Cycles",
        ["kai.schmidt@adventure-works.example"],
    ),
    (
        "Lena",
        "Vogel",
        "Store Operations",
        "Adventure Works Cycles",
        ["lena.vogel@adventure-works.example"],
    ),
    ("Marc", "Favre", "General Manager", "Alpine Ski House", ["marc.favre@alpineskihouse.example"]),
    ("Sophie", "Blanc", "Bookings", "Alpine Ski House", ["sophie.blanc@alpineskihouse.example"]),
    ("Rosa", "Alvarez", "Winemaker", "Coho Winery", ["rosa@cohowinery.example"]),
    ("Dan", "Kerr", "Sales Manager", "Coho Winery", ["dan.kerr@cohowinery.example"]),
    ("Aisha", "Bello", "CTO", "Litware", ["aisha.bello@litware.example"]),
    ("Owen", "Price", "Developer", "Litware", ["owen.price@litware.example"]),
    ("Fiona", "Gallagher", "Office Manager", "Proseware", ["fiona.gallagher@proseware.example"]),
    ("Raj", "Mehta", "Consultant", "Proseware", ["raj.mehta@proseware.example"]),
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
    ("Hannah", "Lee", "Vendor Manager", "Woodgrove Bank", ["hannah.lee@woodgrovebank.example"]),
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
    (
        "Peter",
        "Hughes",
        "Managing Editor",
        "Lucerne Publishing",
        ["peter.hughes@lucernepublishing.example"],
    ),
    ("Mei", "Chen", "Rights Manager", "Lucerne Publishing", ["mei.chen@lucernepublishing.example"]),
    ("Margie", "Shoop", "Owner", "Margie's Travel", ["margie@margiestravel.example"]),
    ("Jack", "Wilson", "Travel Agent", "Margie's Travel", ["jack.wilson@margiestravel.example"]),
    ("Isabel", "Cruz", "Research Director", "Trey Research", ["isabel.cruz@treyresearch.example"]),
    ("Noah", "Fischer", "Data Analyst", "Trey Research", ["noah.fischer@treyresearch.example"]),
    ("Zoe", "Adams", "Lab Coordinator", "Trey Research", ["zoe.adams@treyresearch.example"]),
    ("Liam", "Walsh", "Buyer", "Fabrikam Manufacturing", ["liam.walsh@fabrikam.example"]),
    ("Olga", "Ivanova", "Accountant", "Contoso Pharmaceuticals", ["olga.ivanova@contoso.example"]),
    ("Ethan", "Brooks", "Service Desk", "Litware", ["servicedesk@litware.example"]),
    ("Mateo", "Rossi", "Independent Consultant", None, ["mateo.rossi@freelance.example"]),
    ("Freya", "Nielsen", "Journalist", None, ["freya.nielsen@newsdesk.example"]),
    ("Yusuf", "Demir", "Architect", None, ["yusuf.demir@studio-demir.example"]),
]

# first, last, company, status, owner, addresses
LEADS = [
    (
        "Laura",
        "Bennett",
        "Fourth Coffee",
        Lead.Status.NEW,
        "maria",
        ["laura.bennett@fourthcoffee.example"],
    ),
    (
        "Diego",
        "Ramos",
        "Graphic Design Institute",
        Lead.Status.CONTACTED,
        "maria",
        ["diego@graphicdesigninstitute.example"],
    ),
    (
        "Emma",
        "Clarke",
        "School of Fine Art",
        Lead.Status.NEW,
        "james",
        ["emma.clarke@fineartschool.example"],
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
        "james",
        ["julia.weber@humongousinsurance.example"],
    ),
    ("Tariq", "Aziz", "VanArsdel", Lead.Status.LOST, "maria", ["tariq.aziz@vanarsdel.example"]),
    (
        "Nora",
        "Lindqvist",
        "Wingtip Toys",
        Lead.Status.NEW,
        "demo",
        ["nora.lindqvist@wingtiptoys.example"],
    ),
    (
        "Oliver",
        "Grant",
        "First Up Consultants",
        Lead.Status.CONTACTED,
        "james",
        ["oliver.grant@firstupconsultants.example"],
    ),
    (
        "Ines",
        "Moreau",
        "Relecloud",
        Lead.Status.QUALIFIED,
        "demo",
        ["ines.moreau@relecloud.example"],
    ),
    # Converted below: becomes a contact at a new account, the lead keeps pointing at both.
    (
        "Paul",
        "Novak",
        "Southridge Video",
        Lead.Status.QUALIFIED,
        "maria",
        ["paul.novak@southridgevideo.example"],
    ),
]
CONVERTED_LEAD = ("Paul", "Novak", "Southridge Video")

T = Ticket.Status
P = Ticket.Priority
# subject, status, priority, account, contact address, assignee, description
TICKETS = [
    (
        "Invoice 4471 charged twice",
        T.OPEN,
        P.HIGH,
        "Northwind Traders",
        "janet.leverling@northwind.example",
        "maria",
        "The March invoice appears twice on the card statement; please refund one.",
    ),
    (
        "Cannot log in to the customer portal",
        T.OPEN,
        P.URGENT,
        "Contoso Pharmaceuticals",
        "priya.raman@contoso.example",
        "james",
        "Password reset mails never arrive for the lab team.",
    ),
    (
        "Delivery to Leeds warehouse delayed",
        T.PENDING,
        P.NORMAL,
        "Wide World Importers",
        "samir.haddad@wideworldimporters.example",
        "maria",
        "Waiting for the carrier's new slot before we confirm.",
    ),
    (
        "Request for ISO 9001 certificate",
        T.RESOLVED,
        P.LOW,
        "Fabrikam Manufacturing",
        "grace.obi@fabrikam.example",
        "demo",
        "Sent the current certificate as PDF.",
    ),
    (
        "Bulk order discount question",
        T.OPEN,
        P.NORMAL,
        "Tailspin Toys",
        "tom@tailspintoys.example",
        "demo",
        "Asks whether the 5% tier applies across two shipments.",
    ),
    (
        "API rate limit errors since Tuesday",
        T.OPEN,
        P.HIGH,
        "Litware",
        "aisha.bello@litware.example",
        "james",
        "HTTP 429 on the orders endpoint at about 40 req/s.",
    ),
    (
        "Change billing address",
        T.CLOSED,
        P.LOW,
        "Proseware",
        "fiona.gallagher@proseware.example",
        "maria",
        "Updated in the billing system.",
    ),
    (
        "Security questionnaire for annual review",
        T.PENDING,
        P.NORMAL,
        "Woodgrove Bank",
        "claire.dubois@woodgrovebank.example",
        "demo",
        "Forty questions; waiting on their clarification of section 3.",
    ),
    (
        "Damaged pallets on arrival",
        T.OPEN,
        P.HIGH,
        "Adventure Works Cycles",
        "lena.vogel@adventure-works.example",
        "james",
        "Photos attached by the store team.",
    ),
    (
        "Season pass batch not received",
        T.RESOLVED,
        P.NORMAL,
        "Alpine Ski House",
        "sophie.blanc@alpineskihouse.example",
        "maria",
        "Re-sent through the courier.",
    ),
    (
        "Label printer integration",
        T.OPEN,
        P.LOW,
        "Coho Winery",
        "dan.kerr@cohowinery.example",
        None,
        "Wants the shipping labels to print from the order screen.",
    ),
    (
        "Contract renewal paperwork",
        T.OPEN,
        P.NORMAL,
        "Blue Yonder Airlines",
        "aoife.byrne@blueyonderairlines.example",
        "demo",
        "Needs countersigned copy by month end.",
    ),
]

S = Opportunity.Stage
# name, account, contact address, stage, amount, days to close, owner
OPPORTUNITIES = [
    (
        "Northwind: warehouse scanners rollout",
        "Northwind Traders",
        "andrew.fuller@northwind.example",
        S.PROPOSAL,
        "48000.00",
        30,
        "demo",
    ),
    (
        "Contoso: lab data platform",
        "Contoso Pharmaceuticals",
        "priya.raman@contoso.example",
        S.NEGOTIATION,
        "125000.00",
        21,
        "james",
    ),
    (
        "Fabrikam: maintenance contract 2027",
        "Fabrikam Manufacturing",
        "hiro.tanaka@fabrikam.example",
        S.QUALIFICATION,
        "36000.00",
        60,
        "maria",
    ),
    (
        "Woodgrove: branch kiosk pilot",
        "Woodgrove Bank",
        "victor.stone@woodgrovebank.example",
        S.PROSPECTING,
        "90000.00",
        120,
        "demo",
    ),
    (
        "Adventure Works: spring catalogue",
        "Adventure Works Cycles",
        "kai.schmidt@adventure-works.example",
        S.WON,
        "22500.00",
        -10,
        "maria",
    ),
    (
        "Blue Yonder: crew scheduling add-on",
        "Blue Yonder Airlines",
        "sean.murphy@blueyonderairlines.example",
        S.PROPOSAL,
        "64000.00",
        45,
        "james",
    ),
    (
        "Lucerne: rights management licences",
        "Lucerne Publishing",
        "mei.chen@lucernepublishing.example",
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
        "maria",
    ),
]


def import_demo_mail(mailbox: Mailbox) -> None:
    """Hook for demo mail in `mailbox`. Deliberately empty: the demo mail generator
    (connector/corpus.py) and the `mailbox import` command are not in the tree yet. Until they
    are, the demo mailboxes exist (with their grants and primary choice) but hold no mail."""


class Command(BaseCommand):
    help = "Create demo users, records and mailboxes (idempotent: safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Run even with RELAY_PRODUCTION=true (it creates a superuser 'demo'/'demo').",
        )

    def handle(self, *args, allow_production: bool = False, **options):
        if getattr(settings, "PRODUCTION", False) and not allow_production:
            raise CommandError(
                "Refusing to load demo data in production: it creates a superuser with a known "
                "password. Pass --allow-production if you really mean it."
            )
        with transaction.atomic():
            created = self.load()
        counts = {
            "users": len(USERS),
            "accounts": Account.objects.count(),
            "contacts": Contact.objects.count(),
            "leads": Lead.objects.count(),
            "tickets": Ticket.objects.count(),
            "opportunities": Opportunity.objects.count(),
            "mailboxes": Mailbox.objects.count(),
        }
        summary = ", ".join(f"{n} {name}" for name, n in counts.items())
        verb = f"created {created} new records" if created else "already loaded, nothing added"
        self.stdout.write(f"Demo data {verb}. Now: {summary}.")
        self.stdout.write(f"Demo login: user 'demo', password '{DEMO_PASSWORD}' (a superuser).")

    def load(self) -> int:
        self.created = 0
        users = {row[0]: self.user(*row) for row in USERS}
        accounts = {row[0]: self.account(*row) for row in ACCOUNTS}
        contacts = {}
        for first, last, title, account, emails in CONTACTS:
            contact = self.contact(first, last, title, accounts.get(account), emails)
            contacts.update(dict.fromkeys(emails, contact))
        for row in LEADS:
            self.lead(*row, users=users)
        for subject, status, priority, account, contact, assignee, description in TICKETS:
            if not Ticket.objects.filter(subject=subject).exists():
                crm_services.ticket_create(
                    subject=subject,
                    status=status,
                    priority=priority,
                    account=accounts[account],
                    contact=contacts[contact],
                    assignee=users.get(assignee),
                    description=description,
                )
                self.created += 1
        today = timezone.localdate()
        for name, account, contact, stage, amount, days, owner in OPPORTUNITIES:
            if not Opportunity.objects.filter(name=name).exists():
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
        self.mailboxes(users)
        return self.created

    def user(self, username, first, last, superuser, emails):
        user, created = get_user_model().objects.get_or_create(
            username=username,
            defaults={
                "first_name": first,
                "last_name": last,
                "email": emails[0],
                "is_staff": True,
                "is_superuser": superuser,
            },
        )
        if created:
            # Only on creation: a password changed through the app survives the next `make run`.
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
            self.created += 1
        # Add missing staff addresses, keep any the user added since.
        mine = set(StaffEmail.objects.filter(user=user).values_list("email", flat=True))
        if not set(emails) <= mine:
            crm_services.staff_set_emails(user=user, emails=sorted(mine | set(emails)))
        return user

    def account(self, name, domains, phone):
        account = Account.objects.filter(name=name).first()
        if account is None:
            account = crm_services.account_create(
                name=name, domains=domains, phone=phone, website=f"https://www.{domains[0]}/"
            )
            self.created += 1
        return account

    def contact(self, first, last, title, account, emails):
        known = ContactEmail.objects.filter(email=emails[0]).select_related("contact").first()
        if known is not None:
            return known.contact
        self.created += 1
        return crm_services.contact_create(
            first_name=first, last_name=last, title=title, account=account, emails=emails
        )

    def lead(self, first, last, company, status, owner, emails, *, users):
        lead = Lead.objects.filter(first_name=first, last_name=last, company_name=company).first()
        if lead is not None:
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

    def mailboxes(self, users) -> None:
        demo = users["demo"]
        personal = self.mailbox(
            email_address=f"demo@{OUR_DOMAIN}",
            kind=Mailbox.Kind.PERSONAL,
            owner=demo,
            display_name="Dana Demo",
        )
        support = self.mailbox(
            email_address=f"support@{OUR_DOMAIN}",
            kind=Mailbox.Kind.SHARED,
            owner=None,
            display_name="Relay Demo Support",
            create_tickets=True,
        )
        support.granted_users.add(*users.values())
        if not PrimaryMailbox.objects.filter(user=demo).exists():
            mailbox_set_primary(user=demo, mailbox=personal)
        for mailbox in (personal, support):
            import_demo_mail(mailbox)

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
            sync_from=timezone.localdate() - dt.timedelta(days=90),
            **fields,
        )
        mailbox.full_clean()
        mailbox.save()
        self.created += 1
        return mailbox
