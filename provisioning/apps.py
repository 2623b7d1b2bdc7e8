from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Billing's enforcement (suspend, cancel, plan limits) acts on customer databases,
        # and metering's storage reading includes them; both without importing us.
        from billing import enforcement
        from metering.services import collectors

        from .enforcement import hook
        from .storage import customer_databases_size

        enforcement.register(hook)
        if customer_databases_size not in collectors.storage_sources:
            collectors.storage_sources.append(customer_databases_size)
