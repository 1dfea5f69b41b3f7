from django.http import HttpResponse


def email_tab(request, record_type, pk):
    return HttpResponse("")
