"""The Email tab every CRM record's detail page loads with htmx (crm never imports inbox: the
page holds only the URL).
"""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from crm.models import RECORD_MODELS
from inbox.permissions import readable_mailboxes
from inbox.selectors.records import (
    annotate_for_display,
    attach_recipients,
    messages_for_record,
)
from inbox.views.htmx import _compose_url


@require_GET
def email_tab(request, record_type: str, pk: int):
    model = RECORD_MODELS.get(record_type)
    if model is None:
        raise Http404("No such record type.")
    # The record must exist (a deleted record's tab is a 404, not an empty list).
    record = get_object_or_404(model, pk=pk)
    messages = messages_for_record(user=request.user, record_type=record_type, record_id=pk)
    page = Paginator(messages, settings.RELAY_PAGE_SIZE).get_page(request.GET.get("page"))
    attach_recipients(page.object_list)
    annotate_for_display(page.object_list)
    # Compose only for someone with a mailbox to send from.
    compose_url = _compose_url() if readable_mailboxes(request.user).exists() else None
    # htmx loads the tab into the record page; without JavaScript the tab's link opens it as
    # a page of its own (docs/product.md §7.4).
    return render(
        request,
        "inbox/email_tab.html" if request.htmx else "inbox/email_tab_page.html",
        {
            "record_label": model._meta.verbose_name.capitalize(),
            "record_plural": model._meta.verbose_name_plural,
            "record_type": record_type,
            "record_id": pk,
            "record": record,
            "reference": getattr(record, "reference", ""),
            "page": page,
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=1),
            "compose_url": compose_url,
        },
    )
