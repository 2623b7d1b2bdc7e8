"""Settings for the test suite: same as base, with test mode on and fast hashing."""
from .base import *  # noqa: F401,F403

AEROLITH_TEST_MODE = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
AEROLITH_SCHEMA_POOL_SIZE = 0
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
