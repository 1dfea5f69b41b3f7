from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "inbox"
    verbose_name = "Inbox"

    def ready(self):
        from . import receivers  # noqa: F401  (connects the ticket signals)
