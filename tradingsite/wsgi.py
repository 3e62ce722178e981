"""WSGI entry point (gunicorn serves it in `make run`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")

application = get_wsgi_application()
