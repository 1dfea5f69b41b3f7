"""The inbox pages, one module a page or subject; inbox/urls.py maps the URLs to them."""
