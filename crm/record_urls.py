from django.urls import path

from . import views

app_name = "crm"

# URL segment per record type. "accounts/" shares its prefix with django.contrib.auth's
# "accounts/login/" etc.; the record routes below are numeric or "new/", so they never meet.
SEGMENTS = {
    "account": "accounts",
    "contact": "contacts",
    "lead": "leads",
    "ticket": "tickets",
    "opportunity": "opportunities",
}

urlpatterns = [
    path("", views.home, name="home_page"),
    path("me/addresses/", views.my_addresses, name="my_addresses"),
    path("site-settings/", views.site_settings_page, name="site_settings"),
    path("me/addresses/confirm/<str:token>/", views.my_address_confirm, name="my_address_confirm"),
    path("leads/<int:pk>/convert/", views.lead_convert, name="lead_convert"),
]

for name, segment in SEGMENTS.items():
    urlpatterns += [
        path(f"{segment}/", getattr(views, f"{name}_list"), name=f"{name}_list"),
        path(f"{segment}/new/", getattr(views, f"{name}_create"), name=f"{name}_create"),
        path(f"{segment}/<int:pk>/", getattr(views, f"{name}_detail"), name=f"{name}_detail"),
        path(f"{segment}/<int:pk>/edit/", getattr(views, f"{name}_update"), name=f"{name}_update"),
        path(
            f"{segment}/<int:pk>/delete/",
            getattr(views, f"{name}_delete"),
            name=f"{name}_delete",
        ),
    ]
