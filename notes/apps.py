from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "notes"
    verbose_name = "Notes"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects threads_merged)
        from .timeline import register as register_timeline
        from .views_registry import register

        register()
        register_timeline()  # notes on a record's timeline (docs/product.md §7.4)
