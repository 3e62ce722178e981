"""The Celery side of the house: queues, routing, worker profiles, the default schedule."""
