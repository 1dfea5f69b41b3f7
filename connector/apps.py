from django.apps import AppConfig


class ConnectorConfig(AppConfig):
    name = "connector"
    verbose_name = "Mail connector"

    def ready(self) -> None:
        from . import image_proxy, receivers  # noqa: F401  (receivers: inbox signals -> tasks)

        image_proxy.register()  # inbox's image proxy view fetches through our SSRF guard

        from inbox import hooks

        from .imap import test_connection

        hooks.connection_tester = test_connection  # the wizard's Test connection (inbox.hooks)
