"""The user's inbox preferences."""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from inbox.forms import PreferencesForm
from inbox.selectors.preferences import user_preferences
from inbox.views.outbox import _back


@require_http_methods(["GET", "POST"])
def preferences_page(request):
    prefs = user_preferences(user=request.user)
    form = PreferencesForm(request.POST or None, instance=prefs)
    if request.method == "POST" and form.is_valid():
        form.save()
        flash.success(request, "Inbox preferences saved.")
        return redirect("inbox:preferences")
    return render(
        request,
        "inbox/preferences.html",
        {"form": form},
        status=422 if form.is_bound and form.errors else 200,
    )


@require_POST
def density_switch(request):
    """The list's Compact / Comfortable switch (docs/product.md §7.2): the same form as the
    preferences page with only the density changed; back to the list it was pressed on."""
    prefs = user_preferences(user=request.user)
    form = PreferencesForm(
        {"emails_per_page": prefs.emails_per_page, "density": request.POST.get("density", "")},
        instance=prefs,
    )
    if not form.is_valid():
        return HttpResponseBadRequest("Unknown density.")
    form.save()
    return _back(request, "inbox:inbox_page")
