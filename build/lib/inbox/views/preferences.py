"""The user's inbox preferences."""

from __future__ import annotations

from django.contrib import messages as flash
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from inbox.forms import PreferencesForm
from inbox.selectors.preferences import user_preferences


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
