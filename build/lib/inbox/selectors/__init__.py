"""Selectors read what the pages show, one module a page or subject; every one starts from
inbox/permissions.py."""
