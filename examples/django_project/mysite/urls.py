from django.urls import path

from pages import views

urlpatterns = [
    path("", views.index, name="index"),
    path("greet/", views.greet, name="greet"),
    path("health/", views.health, name="health"),
]
