"""WSGI entry point: ``mysite.wsgi:application``.

Static files are served by Django's StaticFilesHandler (from the apps' static/ folders,
whatever DEBUG says), so the example needs no separate file server; a real deployment
would run ``collectstatic`` and let nginx or WhiteNoise serve them.
"""
import os

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = StaticFilesHandler(get_wsgi_application())
