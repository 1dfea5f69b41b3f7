from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # Signals from inbox (sent by the mail engine) and crm become notifications.
        from . import receivers  # noqa: F401
