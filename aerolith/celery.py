"""The Celery app. tenant-schemas-celery carries the schema of the caller with every task,
so a task sent from a tenant's request runs in that tenant's schema."""
import os

from tenant_schemas_celery.app import CeleryApp

from aerolith.metrics import connect_task_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aerolith.settings.base")

app = CeleryApp("aerolith")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
connect_task_signals()  # task outcomes for /metrics, in workers and in eager mode alike
