"""Pages for the CRM records: list (search, filter, paginate), detail (Details | Email tabs),
create, edit, delete, lead conversion, and a staff user's own addresses.

Function-based views that read through crm.selectors and write through crm.forms (which call
crm.services). The five record types share one set of page functions, driven by RECORDS, so
that every type gets the same behaviour and the same fixed number of queries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from . import forms, selectors, services
from .models import Lead, Opportunity, Ticket
from .timeline import Cursor, timeline_for


@dataclass(frozen=True)
class RecordKind:
    name: str  # "account": URL names, templates, the Email tab's record_type
    label: str
    plural: str
    list: Callable
    detail: Callable
    form: type[forms.RecordForm]
    search_hint: str
    filter_param: str = ""  # a choice field the list can be narrowed by
    filter_choices: list = field(default_factory=list)
    related: Callable | None = None


RECORDS: dict[str, RecordKind] = {
    "account": RecordKind(
        name="account",
        label="Account",
        plural="Accounts",
        list=selectors.account_list,
        detail=selectors.account_detail,
        form=forms.AccountForm,
        search_hint="Name or domain",
        related=lambda record: selectors.account_related(account=record),
    ),
    "contact": RecordKind(
        name="contact",
        label="Contact",
        plural="Contacts",
        list=selectors.contact_list,
        detail=selectors.contact_detail,
        form=forms.ContactForm,
        search_hint="Name, email or account",
        related=lambda record: selectors.contact_related(contact=record),
    ),
    "lead": RecordKind(
        name="lead",
        label="Lead",
        plural="Leads",
        list=selectors.lead_list,
        detail=selectors.lead_detail,
        form=forms.LeadForm,
        search_hint="Name, company or email",
        filter_param="status",
        filter_choices=Lead.Status.choices,
    ),
    "ticket": RecordKind(
        name="ticket",
        label="Ticket",
        plural="Tickets",
        list=selectors.ticket_list,
        detail=selectors.ticket_detail,
        form=forms.TicketForm,
        search_hint="TKT-1042, subject, account",
        filter_param="status",
        filter_choices=Ticket.Status.choices,
    ),
    "opportunity": RecordKind(
        name="opportunity",
        label="Opportunity",
        plural="Opportunities",
        list=selectors.opportunity_list,
        detail=selectors.opportunity_detail,
        form=forms.OpportunityForm,
        search_hint="OPP-17, name, account",
        filter_param="stage",
        filter_choices=Opportunity.Stage.choices,
    ),
}


SEARCH_MAX = 200  # characters of a search that are used


def home(request):
    # Signing in lands here: the Inbox is where the day's work is (docs/product.md §7.1).
    return redirect("inbox:inbox_page")


# --- shared page functions ------------------------------------------------------------------


def _list_page(request, kind: RecordKind):
    typed = request.GET.get("q", "").strip()
    search = typed[:SEARCH_MAX]
    filters = {}
    chosen = ""
    if kind.filter_param:
        chosen = request.GET.get(kind.filter_param, "")
        if chosen in dict(kind.filter_choices):
            filters[kind.filter_param] = chosen
        else:
            chosen = ""
    records = kind.list(search=search, **filters)
    page = Paginator(records, settings.RELAY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "kind": kind,
        "page": page,
        "records": page.object_list,
        "search": search,
        # A pasted page of text is searched by its beginning, and the page says so.
        "search_shortened": len(typed) > SEARCH_MAX,
        "search_max": SEARCH_MAX,
        "chosen": chosen,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2),
    }
    template = f"crm/{kind.name}_list.html"
    # Search-as-you-type swaps only the results; a plain GET (no JavaScript) gets the page.
    if request.htmx and request.htmx.target == "results":
        template += "#results"
    return render(request, template, context)


def _detail_page(request, kind: RecordKind, pk: int):
    record = kind.detail(pk=pk)
    # The timeline at the centre: mail and notes, newest first (docs/product.md §7.4).
    timeline = timeline_for(
        user=request.user,
        record_type=kind.name,
        record_id=record.pk,
        before=Cursor.parse(request.GET.get("before")),
        limit=settings.RELAY_PAGE_SIZE,
    )
    context = {"kind": kind, "record": record, "timeline": timeline}
    if kind.related:
        context.update(kind.related(record))
    return render(request, f"crm/{kind.name}_detail.html", context)


def _links_from_query(request, form_class, record) -> dict:
    """A "New ticket" link on an account's page opens the form with that account chosen
    (?account=12). Only for new records, only link fields; the form still validates them."""
    if record is not None:
        return {}
    return {
        name: request.GET[name]
        for name in ("account", "contact")
        if name in form_class.base_fields and request.GET.get(name, "").isdigit()
    }


def _warn_shared_domains(request, record) -> None:
    # Allowed, but the person should know right away that these domains will not file mail.
    if record.record_type != "account":
        return
    for domain, accounts in selectors.shared_domains(account=record).items():
        names = ", ".join(a.name for a in accounts)
        messages.warning(
            request,
            f"{domain} is also claimed by {names}: mail from it is not filed automatically.",
        )


def _form_page(request, kind: RecordKind, record=None):
    form_class = kind.form
    duplicates = []
    if request.method == "POST":
        form = form_class(request.POST, instance=record)
        if form.is_valid() and not request.POST.get("duplicates_ok"):
            duplicates = _possible_duplicates(kind, form, record)
        if form.is_valid() and not duplicates:
            try:
                saved = form.save()
            except ValidationError as exc:
                # The model's own checks (run again by the service) refused it: nothing was
                # written, because every service is one transaction.
                form.add_error(None, exc)
            else:
                verb = "created" if record is None else "saved"
                messages.success(request, f"{kind.label} “{saved}” {verb}.")
                _warn_shared_domains(request, saved)
                return redirect(saved)
    else:
        form = form_class(instance=record, initial=_links_from_query(request, form_class, record))
    return render(
        request,
        "crm/record_form.html",
        {"kind": kind, "form": form, "record": record, "duplicates": duplicates},
        status=422 if form.is_bound and form.errors else 200,
    )


def _possible_duplicates(kind: RecordKind, form, record) -> list:
    """Contacts or leads like the one being saved: shown before saving, and the person may go
    on anyway (docs/product.md §1.2)."""
    if kind.name not in ("contact", "lead"):
        return []
    data = form.cleaned_data
    return selectors.possible_duplicates(
        kind=kind.name,
        first_name=data.get("first_name", ""),
        last_name=data.get("last_name", ""),
        emails=data.get("emails") or [],
        account=data.get("account"),
        company_name=data.get("company_name", ""),
        exclude_pk=record.pk if record is not None else None,
    )


def _delete_page(request, kind: RecordKind, pk: int):
    record = kind.detail(pk=pk)
    if request.method == "POST":
        label = str(record)
        with transaction.atomic():
            record.delete()
        messages.success(request, f"{kind.label} “{label}” deleted.")
        return redirect(f"crm:{kind.name}_list")
    return render(request, "crm/record_confirm_delete.html", {"kind": kind, "record": record})


# --- one set of views per record type (function-based, named for the URLconf) --------------


def _views_for(kind: RecordKind):
    @require_GET
    def list_view(request):
        return _list_page(request, kind)

    @require_GET
    def detail_view(request, pk: int):
        return _detail_page(request, kind, pk)

    @require_http_methods(["GET", "POST"])
    def create_view(request):
        return _form_page(request, kind)

    @require_http_methods(["GET", "POST"])
    def update_view(request, pk: int):
        return _form_page(request, kind, kind.detail(pk=pk))

    @require_http_methods(["GET", "POST"])
    def delete_view(request, pk: int):
        return _delete_page(request, kind, pk)

    for view, action in (
        (list_view, "list"),
        (detail_view, "detail"),
        (create_view, "create"),
        (update_view, "update"),
        (delete_view, "delete"),
    ):
        view.__name__ = view.__qualname__ = f"{kind.name}_{action}"
    return list_view, detail_view, create_view, update_view, delete_view


account_list, account_detail, account_create, account_update, account_delete = _views_for(
    RECORDS["account"]
)
contact_list, contact_detail, contact_create, contact_update, contact_delete = _views_for(
    RECORDS["contact"]
)
lead_list, lead_detail, lead_create, lead_update, lead_delete = _views_for(RECORDS["lead"])
ticket_list, ticket_detail, ticket_create, ticket_update, ticket_delete = _views_for(
    RECORDS["ticket"]
)
(
    opportunity_list,
    opportunity_detail,
    opportunity_create,
    opportunity_update,
    opportunity_delete,
) = _views_for(RECORDS["opportunity"])


@require_http_methods(["GET", "POST"])
def lead_convert(request, pk: int):
    lead = selectors.lead_detail(pk=pk)
    if lead.is_converted:
        messages.info(request, "This lead has already been converted.")
        return redirect(lead)
    if request.method == "POST":
        try:
            contact = services.lead_convert(lead=lead)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect(lead)
        text = f"Lead converted: contact “{contact}” created"
        if contact.account_id:
            text += f" at account “{contact.account}”"
        messages.success(request, text + ".")
        return redirect(contact)
    return render(request, "crm/lead_convert.html", {"kind": RECORDS["lead"], "record": lead})


@require_http_methods(["GET", "POST"])
def my_addresses(request):
    if request.method == "POST":
        form = forms.StaffEmailsForm(
            request.POST,
            user=request.user,
            confirm_url=lambda token: request.build_absolute_uri(
                reverse("crm:my_address_confirm", args=[token])
            ),
        )
        if form.is_valid() and form.save():
            text = "Your email addresses were saved."
            if form.waiting:
                text += (
                    f" A confirmation link was mailed to {', '.join(form.waiting)}: an address "
                    "counts as yours once you follow it."
                )
            messages.success(request, text)
            return redirect(reverse("crm:my_addresses"))
    else:
        form = forms.StaffEmailsForm(user=request.user)
    return render(
        request,
        "crm/my_addresses.html",
        {"form": form, "waiting": selectors.staff_emails_waiting(user=request.user)},
        status=422 if form.is_bound and form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def my_address_confirm(request, token: str):
    """The link of a confirmation mail (docs/reliability.md C-19). Opening it changes nothing
    (mail scanners open links): the signed-in user confirms with a button."""
    error = ""
    if request.method == "POST":
        try:
            row = services.staff_confirm_email(user=request.user, token=token)
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, f"{row.email} is confirmed: mail from it is now yours.")
            return redirect(reverse("crm:my_addresses"))
    return render(
        request,
        "crm/my_address_confirm.html",
        {"error": error},
        status=400 if error else 200,
    )


@require_http_methods(["GET", "POST"])
def site_settings_page(request):
    """Site settings (docs/product.md §8.1): for administrators with the permission; anyone
    else gets the same 404 as for a page that does not exist."""
    from django.http import Http404

    from .models import SiteSettings

    if not services.can_change_site_settings(request.user):
        raise Http404("No such page.")
    row = SiteSettings.objects.filter(pk=1).first()
    form = forms.SiteSettingsForm.for_row(row, request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.site_settings_save(user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for name, errors in exc.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                messages.success(request, "Site settings saved. They apply from now on.")
                return redirect("crm:site_settings")
        status = 400
    return render(
        request,
        "crm/site_settings.html",
        {"form": form, "in_force": selectors.site_settings()},
        status=status,
    )
