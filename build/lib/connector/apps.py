from django.apps import AppConfig


class ConnectorConfig(AppConfig):
    name = "connector"
    verbose_name = "Mail connector"

    def ready(self) -> None:
        from inbox import ports

        from .port import ConnectorPort
        from .scheduling import receivers  # noqa: F401  (crm and ingest signals -> tasks)

        ports.install(ConnectorPort())
