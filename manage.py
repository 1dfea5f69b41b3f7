#!/usr/bin/env python
"""Django's command-line utility for Relay CRM (crm/manage.py)."""

from crm.manage import main

if __name__ == "__main__":
    main()
