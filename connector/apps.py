from django.apps import AppConfig


class ConnectorConfig(AppConfig):
    name = "connector"
    verbose_name = "Mail connector"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects inbox signals to task enqueueing)
