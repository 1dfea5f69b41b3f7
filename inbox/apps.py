from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "inbox"
    verbose_name = "Inbox"

    def ready(self):
        from crm import health

        from . import receivers  # noqa: F401  (connects the ticket signals)
        from .selectors.mailboxes import push_summary
        from .timeline import register as register_timeline

        # /healthz shows the push gateways' heartbeats and the watches (docs/product.md §3.11).
        health.REPORTS["push"] = push_summary
        # Mail on a record's timeline (docs/product.md §7.4).
        register_timeline()
