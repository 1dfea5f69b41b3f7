"""Django's command-line utility for Relay CRM: `python manage.py` in a checkout, the
`relay-manage` command of an installed package (pyproject.toml [project.scripts])."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
