from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "notes"
    verbose_name = "Notes"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects threads_merged)
        from .views_registry import register

        register()
