"""factory_boy factories for every model. Records with addresses take `emails=[...]` /
`domains=[...]` and go through the crm services, so normalisation is the real one."""

from __future__ import annotations

import hashlib

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from crm import models as crm
from crm import services as crm_services
from inbox import models as inbox

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@relay.test")
    is_staff = False

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or DEFAULT_PASSWORD)
        if create:
            self.save(update_fields=["password"])


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group

    name = factory.Sequence(lambda n: f"team{n}")


class StaffEmailFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.StaffEmail

    user = factory.SubFactory(UserFactory)
    email = factory.Sequence(lambda n: f"staff{n}@relay.test")
    # An address its owner confirmed (or an admin set): staff mail (docs/reliability.md C-19).
    confirmed_at = factory.LazyFunction(timezone.now)


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.Account
        skip_postgeneration_save = True

    name = factory.Faker("company")
    website = factory.Faker("url")

    @factory.post_generation
    def domains(self, create, extracted, **kwargs):
        if create and extracted:
            crm_services.account_set_domains(account=self, domains=extracted)


class AccountDomainFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.AccountDomain

    account = factory.SubFactory(AccountFactory)
    domain = factory.Sequence(lambda n: f"company{n}.example")


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.Contact
        skip_postgeneration_save = True

    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    title = factory.Faker("job")

    @factory.post_generation
    def emails(self, create, extracted, **kwargs):
        if create and extracted:
            crm_services.contact_set_emails(contact=self, emails=extracted)


class ContactEmailFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.ContactEmail

    contact = factory.SubFactory(ContactFactory)
    email = factory.Sequence(lambda n: f"contact{n}@customer.example")


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.Lead
        skip_postgeneration_save = True

    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    company_name = factory.Faker("company")

    @factory.post_generation
    def emails(self, create, extracted, **kwargs):
        if create and extracted:
            crm_services.lead_set_emails(lead=self, emails=extracted)


class LeadEmailFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.LeadEmail

    lead = factory.SubFactory(LeadFactory)
    email = factory.Sequence(lambda n: f"lead{n}@prospect.example")


class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.Ticket

    subject = factory.Faker("sentence", nb_words=6)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return crm_services.ticket_create(**kwargs)


class OpportunityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.Opportunity

    name = factory.Faker("catch_phrase")
    amount = factory.Faker("pydecimal", left_digits=5, right_digits=2, positive=True)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return crm_services.opportunity_create(**kwargs)


class MailboxFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.Mailbox
        skip_postgeneration_save = True

    kind = inbox.Mailbox.Kind.PERSONAL
    owner = factory.SubFactory(UserFactory)
    email_address = factory.Sequence(lambda n: f"mailbox{n}@relay.test")
    imap_host = "127.0.0.1"
    imap_port = 993
    smtp_host = "127.0.0.1"
    smtp_port = 465
    active_folders = factory.LazyFunction(lambda: ["INBOX", "Sent"])

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or "mail-password")
        if create:
            self.save(update_fields=["password_encrypted"])


class SharedMailboxFactory(MailboxFactory):
    kind = inbox.Mailbox.Kind.SHARED
    owner = None


class FolderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.Folder

    mailbox = factory.SubFactory(MailboxFactory)
    name = factory.Sequence(lambda n: f"Folder{n}")
    is_active = True
    uidvalidity = 1


class ThreadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.Thread

    mailbox = factory.SubFactory(MailboxFactory)
    subject = factory.Faker("sentence")


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.Message

    mailbox = factory.SubFactory(MailboxFactory)
    subject = factory.Faker("sentence")
    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"message-{n}".encode()).hexdigest())
    message_id = factory.Sequence(lambda n: f"<m{n}@customer.example>")
    from_address = factory.Sequence(lambda n: f"sender{n}@customer.example")
    from_name = factory.Faker("name")
    date = factory.Faker("date_time_this_year", tzinfo=__import__("datetime").UTC)
    text_body = factory.Faker("paragraph")
    snippet = factory.LazyAttribute(lambda m: m.text_body[:200])


class MessageAddressFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.MessageAddress

    message = factory.SubFactory(MessageFactory)
    role = inbox.MessageAddress.Role.FROM
    address = factory.LazyAttribute(lambda a: a.message.from_address)


class LocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.Location

    message = factory.SubFactory(MessageFactory)
    folder = factory.SubFactory(FolderFactory, mailbox=factory.SelfAttribute("..message.mailbox"))
    uidvalidity = factory.SelfAttribute("folder.uidvalidity")
    uid = factory.Sequence(lambda n: n + 1)


class AttachmentBlobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.AttachmentBlob

    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"blob-{n}".encode()).hexdigest())
    size = 10
    file = factory.LazyAttribute(lambda b: f"blobs/{b.sha256}")


class AttachmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.Attachment

    message = factory.SubFactory(MessageFactory)
    blob = factory.SubFactory(AttachmentBlobFactory)
    filename = "report.pdf"
    content_type = "application/pdf"


class FilingFactory(factory.django.DjangoModelFactory):
    """FilingFactory(message=m, contact=c) -> record_type is derived from the record given."""

    class Meta:
        model = inbox.Filing

    message = factory.SubFactory(MessageFactory)
    rule = inbox.Filing.Rule.SENDER
    record_type = factory.LazyAttribute(
        lambda f: next(
            name for name in inbox.Filing.RECORD_FIELDS if getattr(f, name, None) is not None
        )
    )


class TriageEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.TriageEntry

    message = factory.SubFactory(MessageFactory)
    reason = inbox.TriageEntry.Reason.UNFILED


class OutboxEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.OutboxEntry

    mailbox = factory.SubFactory(MailboxFactory)
    message_id = factory.Sequence(lambda n: f"<out{n}@relay.test>")
    from_address = factory.LazyAttribute(lambda o: o.mailbox.email_address)
    to = factory.LazyFunction(lambda: ["customer@customer.example"])
    subject = "Hello"
    text_body = "Hello there"


class LedgerEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = inbox.LedgerEntry

    folder = factory.SubFactory(FolderFactory)
    mailbox = factory.SelfAttribute("folder.mailbox")
    uidvalidity = 1
    uid = factory.Sequence(lambda n: n + 1)
    outcome = inbox.LedgerEntry.Outcome.STORED
