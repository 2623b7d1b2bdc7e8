"""Settings of the real HTTP server the CLI tests start (tests/test_cli.py): the test
settings, except that Celery tasks are sent instead of run inline, into an in-memory
broker that nobody reads. A cluster scale asked through the CLI therefore answers 202
with a pending operation and starts no PostgreSQL server, and no worker of another test
can ever pick the task up (a Redis broker would keep it)."""
from aerolith.settings.test import *  # noqa: F401,F403

CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "cache+memory://"
