"""Forms of the inbox pages: the search and filter bar, Qualify's quick-create, and the user's
inbox preferences. They only validate; writing goes through inbox.services."""

from __future__ import annotations

from django import forms

from .models import UserPreferences
from .selectors.conversations import SEARCH_MAX, MessageFilters
from .selectors.qualify import RECORD_LABELS


class FilterForm(forms.Form):
    """The Inbox's search box and filters (a GET form: every view of the list is a URL)."""

    # No max_length: a longer search is not refused (which dropped it silently), it is
    # shortened to its beginning and the list says so.
    q = forms.CharField(required=False, label="Search")
    unread = forms.BooleanField(required=False, label="Unread")
    unfiled = forms.BooleanField(required=False, label="Unfiled")
    flagged = forms.BooleanField(required=False, label="Flagged")
    attachments = forms.BooleanField(required=False, label="Has attachment")
    filed_on = forms.ChoiceField(
        required=False,
        label="Filed on",
        choices=[("", "Filed on anything")]
        + [
            (k, f"Filed on {'an' if v[0] in 'AEIOU' else 'a'} {v.lower()}")
            for k, v in RECORD_LABELS.items()
        ],
    )
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def filters(self) -> MessageFilters:
        """The filters asked for; a malformed value (a bad date) is ignored, not an error page."""
        self.is_valid()  # invalid fields are left out of cleaned_data: those filters are off
        data = self.cleaned_data
        typed = (data.get("q") or "").strip()
        return MessageFilters(
            search=typed[:SEARCH_MAX].strip(),
            shortened=len(typed) > SEARCH_MAX,
            unread=bool(data.get("unread")),
            unfiled=bool(data.get("unfiled")),
            flagged=bool(data.get("flagged")),
            attachments=bool(data.get("attachments")),
            filed_on=data.get("filed_on") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
        )


class QuickCreateForm(forms.Form):
    """Qualify's "new contact / new lead from the sender"."""

    create = forms.ChoiceField(choices=[("contact", "Contact"), ("lead", "Lead")])
    first_name = forms.CharField(max_length=100, required=False, label="First name")
    last_name = forms.CharField(max_length=100, required=False, label="Last name")
    company_name = forms.CharField(max_length=200, required=False, label="Company")

    def clean(self):
        data = super().clean()
        if not (data.get("first_name") or data.get("last_name")):
            raise forms.ValidationError("Give the new record a name.")
        return data

    def record_fields(self) -> dict:
        data = self.cleaned_data
        fields = {"first_name": data["first_name"], "last_name": data["last_name"]}
        if data["create"] == "lead" and data.get("company_name"):
            fields["company_name"] = data["company_name"]
        return fields


class PreferencesForm(forms.ModelForm):
    emails_per_page = forms.TypedChoiceField(
        coerce=int,
        choices=[(n, f"{n} conversations") for n in UserPreferences.EMAILS_PER_PAGE_CHOICES],
        label="Emails per page",
        help_text="How many conversations the inbox lists on one page.",
    )

    class Meta:
        model = UserPreferences
        fields = ["emails_per_page", "density"]
        labels = {"density": "Rows in the list"}
        help_texts = {"density": "Compact: one line per conversation, more on the screen."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Left out of a post (an older form, a script): the density stays as it was.
        self.fields["density"].required = False

    def clean_density(self) -> str:
        return self.cleaned_data.get("density") or self.instance.density


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input (Django's documented pattern)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


# One message may carry this much in new attachments (the SMTP servers people use refuse
# more than 25-35 MB once base64 has grown it by a third).
MAX_ATTACHMENTS_BYTES = 18 * 1024 * 1024


class ComposeForm(forms.Form):
    """Compose, reply, reply-all and forward: who it goes to and what it says. The mailbox
    it is sent from is chosen among the user's own (the view passes them)."""

    mailbox = forms.TypedChoiceField(coerce=int, label="From")
    to = forms.CharField(label="To", required=False, max_length=5000)
    cc = forms.CharField(label="Cc", required=False, max_length=5000)
    bcc = forms.CharField(label="Bcc", required=False, max_length=5000)
    subject = forms.CharField(label="Subject", required=False, max_length=900)
    body = forms.CharField(
        label="Message", required=False, widget=forms.Textarea(attrs={"rows": 12})
    )
    # The rich-text editor's HTML (sanitised by the services, docs/reliability.md X-20); empty
    # without JavaScript, when the plain textarea is the message.
    body_html = forms.CharField(required=False, widget=forms.HiddenInput)
    attachments = MultipleFileField(label="Attachments", required=False)
    draft = forms.IntegerField(required=False, widget=forms.HiddenInput)
    # "Send without a subject?" answered yes (docs/product.md §5.5).
    confirm_no_subject = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, mailboxes=(), forwarding: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["mailbox"].choices = [
            (m.pk, f"{m.display_name} <{m.email_address}>" if m.display_name else m.email_address)
            for m in mailboxes
        ]
        if forwarding:
            self.fields["attachments"].help_text = "The original's attachments go along."

    def clean_attachments(self):
        files = self.cleaned_data.get("attachments") or []
        if sum(f.size for f in files) > MAX_ATTACHMENTS_BYTES:
            raise forms.ValidationError("Attachments may add up to 18 MB at most.")
        return files
