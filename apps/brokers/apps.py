from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "apps.brokers"
    label = "brokers"
    verbose_name = "Brokers"
    default_auto_field = "django.db.models.BigAutoField"
