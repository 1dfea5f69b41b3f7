from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM records"

    def ready(self):
        from . import signin  # noqa: F401  (its signal receivers count failed sign-ins)
