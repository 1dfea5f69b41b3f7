"""Reading one message (inbox.reading_views), included from inbox/urls.py under the
``inbox`` namespace. Every URL the sandboxed frame loads starts with
``messages/<pk>/``: the frame's CSP allows images from that message's paths only."""

from django.urls import path

from . import reading_views

urlpatterns = [
    path("messages/<int:pk>/", reading_views.message_read, name="message_read"),
    path("messages/<int:pk>/body/", reading_views.message_body, name="message_body"),
    path("messages/<int:pk>/raw/", reading_views.message_raw, name="message_raw"),
    path(
        "messages/<int:pk>/attachments/<int:attachment_pk>/",
        reading_views.attachment_download,
        name="attachment_download",
    ),
    path(
        "messages/<int:pk>/inline/<int:attachment_pk>/",
        reading_views.message_inline,
        name="message_inline",
    ),
    path("messages/<int:pk>/image/", reading_views.image_proxy, name="image_proxy"),
]
