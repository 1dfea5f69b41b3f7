from django.shortcuts import redirect


def home(request):
    return redirect("crm:contact_list")
