"""The Django project; importing it makes the one Celery app available as `tradingsite.celery_app`."""

from tradingsite.celery import app as celery_app

__all__ = ("celery_app",)
