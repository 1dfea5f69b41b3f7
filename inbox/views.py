"""Inbox pages. For now: the Email tab that every CRM record's detail page loads with htmx."""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from crm.models import RECORD_MODELS

from .models import Filing
from .selectors import messages_for_record


@require_GET
def email_tab(request, record_type: str, pk: int):
    model = RECORD_MODELS.get(record_type)
    if model is None:
        raise Http404("No such record type.")
    # The record must exist (a deleted record's tab is a 404, not an empty list).
    record = get_object_or_404(model.objects.only("pk"), pk=pk)
    if not request.htmx:
        # The tab is a fragment: someone who opens its address directly gets the whole page.
        return redirect(f"{record.get_absolute_url()}#email")
    messages = messages_for_record(user=request.user, record_type=record_type, record_id=pk)
    page = Paginator(messages, settings.RELAY_PAGE_SIZE).get_page(request.GET.get("page"))
    rule_labels = dict(Filing.Rule.choices)
    for message in page.object_list:
        message.filing_rule_label = rule_labels.get(message.filing_rule, message.filing_rule)
    return render(
        request,
        "inbox/email_tab.html",
        {
            "record_type": record_type,
            "record_id": pk,
            "page": page,
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=1),
        },
    )
