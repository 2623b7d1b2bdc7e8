"""Settings for the test suite: same as base, with test mode on and fast hashing."""
from .base import *  # noqa: F401,F403

AEROLITH_TEST_MODE = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AEROLITH_RECOVERY_CODE_HASH = {"memory_cost": 64}  # Argon2id's floor: recovery codes fast too
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
AEROLITH_SCHEMA_POOL_SIZE = 0
AEROLITH_RATE_LIMITS = False  # on in tests/metering/test_rate_limits.py
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
# Crypto payments: a fixed test merchant wallet and fallback SOL rate; no chain listens on
# port 9, so a test that needs Solana starts its LiteSVM adapter (tests/fakes/solana_rpc.py).
AEROLITH_SOLANA_MERCHANT = "8yyxXhu2CJFGGHViFZqDqKkJk4rvM3PvoHqiWU1fvBWN"
AEROLITH_SOLANA_RPC_URL = "http://127.0.0.1:9"
AEROLITH_SOLANA_RPC_RETRIES = 0
AEROLITH_SOL_FALLBACK_USD = "150"
AEROLITH_RATE_SOURCE_URL = ""
# Tron: the documented test xpub; no TronGrid listens on port 9, so a test that needs Tron
# starts its fake (tests/fakes/trongrid.py).
AEROLITH_TRON_XPUB = TRON_TEST_XPUB  # noqa: F405
AEROLITH_TRONGRID_URL = "http://127.0.0.1:9"
AEROLITH_TRONGRID_RETRIES = 0
AEROLITH_TRX_FALLBACK_USD = "0.25"
