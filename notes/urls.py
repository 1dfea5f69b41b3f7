from django.urls import path

from . import views

app_name = "notes"

urlpatterns = [
    path("", views.notes_search, name="search"),
    path("mentions/", views.mentions_page, name="mentions"),
    path("on/<str:target_type>/<int:pk>/", views.notes_panel, name="panel"),
    path("on/<str:target_type>/<int:pk>/people/", views.mention_suggest, name="mention_suggest"),
    path("<int:pk>/delete/", views.note_delete, name="delete"),
    path("conversations/<int:pk>/", views.thread_open, name="thread_open"),
]
