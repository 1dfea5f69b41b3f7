from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo data `make run` starts with (manage.py demo_data): generated mail and records.
    No models; nothing in the product imports it (import-linter contract in pyproject.toml)."""

    name = "demo"
    verbose_name = "Demo data"
