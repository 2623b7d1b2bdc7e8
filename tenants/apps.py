from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        import aerolith.api.openapi  # noqa: F401  registers the API's security schemes

        from .webhooks import tasks  # noqa: F401  webhook tasks and the webhooks.attempt job
