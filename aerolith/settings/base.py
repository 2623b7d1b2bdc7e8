"""Settings shared by every environment. Every value comes from the environment, with a
default that is safe for a developer's machine."""
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key-change-me-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Outside production, staff may attach test clocks to tenants (SPEC §9).
AEROLITH_TEST_MODE = env.bool("AEROLITH_TEST_MODE", default=False)
AEROLITH_BASE_DOMAIN = env("AEROLITH_BASE_DOMAIN", default="aerolith.localhost")
# How links to tenant domains are written (scheme and port of the public entry point).
AEROLITH_URL_SCHEME = env("AEROLITH_URL_SCHEME", default="http")
AEROLITH_URL_PORT = env("AEROLITH_URL_PORT", default="8000")
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=[AEROLITH_BASE_DOMAIN, f".{AEROLITH_BASE_DOMAIN}", "localhost", "127.0.0.1"],
)

SHARED_APPS = [
    "django_tenants",
    "tenants",
    "billing",
    "metering",
    "provisioning",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    # Two-factor authentication (SPEC §8): django-otp's login machinery; the devices are
    # tenants' own (tenants/otp_devices.py: keys sealed, recovery codes hashed).
    "django_otp",
    "axes",  # failed-login throttling; its records live in the public schema
]
# Our apps hold both public and tenant-private models; aerolith.db_router decides per
# model (see TenantPrivateModel), so they are listed here as well.
TENANT_APPS = ["tenants", "billing", "metering", "provisioning"]
INSTALLED_APPS = list(dict.fromkeys(SHARED_APPS + TENANT_APPS))

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_URLCONF = "aerolith.urls_public"
ROOT_URLCONF = "aerolith.urls"
TENANT_BASE_SCHEMA = "tenant_base"
TENANT_CREATION_FAKES_MIGRATIONS = True
# One `SET search_path` per connection and tenant switch instead of one per cursor (each is
# a round trip: six of the twelve statements of an ingestion request were these).
TENANT_LIMIT_SET_CALLS = True
TENANT_MULTIPROCESSING_MAX_PROCESSES = env.int("TENANT_MIGRATE_PROCESSES", default=4)
# Ours decides every case; django-tenants insists its own router is listed too.
DATABASE_ROUTERS = ["aerolith.db_router.TenantModelRouter", "django_tenants.routers.TenantSyncRouter"]

MIDDLEWARE = [
    "aerolith.metrics.MetricsMiddleware",  # first: times every request, probes included
    "aerolith.middleware.HealthCheckMiddleware",
    "aerolith.middleware.RequestIdMiddleware",
    "tenants.middleware.TenantMiddleware",
    "metering.middleware.BandwidthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "tenants.staff_otp.StaffOTPRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.portal.context.portal",
            ],
        },
    },
]

WSGI_APPLICATION = "aerolith.wsgi.application"

DATABASES = {"default": env.db_url("DATABASE_URL", default="postgresql://postgres@127.0.0.1:5432/aerolith")}
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

AUTH_USER_MODEL = "tenants.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = [
    "aerolith.hashers.Argon2idHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
LOGIN_URL = "portal:login"
# django-axes checks every authenticate() for lockouts before Django's own backend runs.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed sign-ins (SPEC §8, tenants/throttle.py): AXES_FAILURE_LIMIT failures within the
# cool-off lock the account, and separately the client IP, for AXES_COOLOFF_TIME; every
# further failure while locked restarts it. The IP is REMOTE_ADDR (set by the proxy in
# front of the app); a spoofable X-Forwarded-For is never trusted here.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username"], ["ip_address"]]
AXES_USERNAME_CALLABLE = "tenants.throttle.login_username"
AXES_LOCKOUT_CALLABLE = "tenants.throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "tenants.throttle.client_ip"
AXES_RESET_ON_SUCCESS = False  # else a success from one IP would clear others' failures
AXES_VERBOSE = False
# No log of successful sign-ins: failures expire after the cool-off, so no email or IP is
# kept longer than needed (erasure, SPEC §8).
AXES_DISABLE_ACCESS_LOG = True
# TOTP (django-otp): the issuer shown in authenticator apps; codes of the previous and next
# 30-second step are accepted; a wrong code doubles the wait before the next try.
OTP_TOTP_ISSUER = "Aerolith Cloud"
OTP_TOTP_TOLERANCE = 1

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sessions are per host: the public domain hands a signed, one-time login over to the
# tenant domain instead of sharing one cookie across every subdomain.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(BASE_DIR / ".var" / "emails"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Aerolith Cloud <billing@aerolith.localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiKeyAuthentication",
        "tenants.authentication.TenantJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.HasTenantAction"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "aerolith.api.pagination.CursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "aerolith.api.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["metering.throttles.ApiCallMeter"],
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "SIGNING_KEY": env("JWT_SIGNING_KEY", default=SECRET_KEY),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "user_id",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Aerolith Cloud API",
    "DESCRIPTION": (
        "Tenant endpoints live on the organisation's own domain "
        "(`https://<slug>.aerolith.localhost/api/v1/...`); `plans` and `signup` live on "
        "the public domain. Errors are RFC 9457 problem+json documents."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_URLCONF": "aerolith.urls_schema",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "aerolith.api.openapi.document_rate_limits"],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "ENUM_NAME_OVERRIDES": {"RoleEnum": "tenants.models.Role", "RegionEnum": "tenants.models.Region",
                            "TenantStatusEnum": "tenants.models.TenantStatus",
                            "InvoiceStatusEnum": "billing.models.Invoice.Status",
                            "PaymentStatusEnum": "billing.models.Payment.Status",
                            "DatabaseStateEnum": "provisioning.models.DatabaseState",
                            "OperationStateEnum": "provisioning.models.OperationState"},
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection after every task unless told to
# reuse it: a fresh PostgreSQL backend per task cost more than the renewal itself
# (bench/renewal.py). Connections are still recycled after this many tasks, and Django's
# CONN_MAX_AGE / health checks apply as in requests.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Periodic tasks are registered here, in code; django-celery-beat copies them into its
# tables at start so staff can see (and pause) them in the admin.
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-work": {
        "task": "tenants.tasks.dispatch_due_work",
        "schedule": env.float("AEROLITH_DISPATCH_SECONDS", default=60.0),
    },
    "refill-schema-pool": {
        "task": "tenants.tasks.refill_schema_pool",
        "schedule": 60.0,
    },
    "usage-buffer-flush": {"task": "metering.tasks.usage_buffer_flush", "schedule": 10.0},
    "usage-storage-collect": {"task": "metering.tasks.usage_storage_collect", "schedule": 3600.0},
    "usage-counters-check": {"task": "metering.tasks.usage_counters_check", "schedule": 600.0},
    "usage-retention": {"task": "metering.tasks.usage_retention", "schedule": 3600.0},
    "crypto-quotes-scan": {
        "task": "billing.tasks.crypto_quotes_scan",
        "schedule": env.float("AEROLITH_CRYPTO_SCAN_SECONDS", default=15.0),
    },
    "crypto-outgoing-confirm": {
        "task": "billing.tasks.crypto_outgoing_confirm",
        "schedule": env.float("AEROLITH_CRYPTO_SCAN_SECONDS", default=15.0),
    },
    "operations-resume": {"task": "provisioning.tasks.operations_resume", "schedule": 60.0},
    "data-exports-expire": {"task": "tenants.tasks.data_exports_expire", "schedule": 3600.0},
    "clusters-health": {
        "task": "provisioning.tasks.clusters_health_dispatch",
        "schedule": env.float("AEROLITH_HEALTH_SECONDS", default=60.0),
    },
    "autoscale": {
        "task": "provisioning.tasks.autoscale_dispatch",
        "schedule": env.float("AEROLITH_AUTOSCALE_SECONDS", default=60.0),
    },
    # Outbox → webhook deliveries; retries are due work (webhooks.attempt jobs).
    "webhooks-dispatch": {"task": "tenants.webhooks.tasks.webhooks_dispatch", "schedule": 5.0},
}

# The beat dispatcher sends tenants with due work in chunks of this many per task.
AEROLITH_DUE_WORK_CHUNK = env.int("AEROLITH_DUE_WORK_CHUNK", default=50)
# Data exports (SPEC §8): zip archives written here (mode 0600), downloadable once, deleted
# after this many days by the hourly data-exports-expire task.
AEROLITH_EXPORTS_DIR = env("AEROLITH_EXPORTS_DIR", default="")  # "" = <var dir>/exports
AEROLITH_EXPORT_TTL_DAYS = env.int("AEROLITH_EXPORT_TTL_DAYS", default=7)

# Provisioning (SPEC §7). Clusters have 1..AEROLITH_CLUSTER_MAX_NODES nodes. An operation
# step that fails is retried by later runs this many times before the operation fails; a
# running operation whose worker has not reported for AEROLITH_OPERATION_STALE_SECONDS is
# run again (worker restarts); cloud providers are polled every POLL_SECONDS while working.
AEROLITH_CLUSTER_MAX_NODES = env.int("AEROLITH_CLUSTER_MAX_NODES", default=100)
AEROLITH_OPERATION_ATTEMPTS = env.int("AEROLITH_OPERATION_ATTEMPTS", default=5)
AEROLITH_OPERATION_STALE_SECONDS = env.int("AEROLITH_OPERATION_STALE_SECONDS", default=300)
AEROLITH_OPERATION_POLL_SECONDS = env.int("AEROLITH_OPERATION_POLL_SECONDS", default=15)
AEROLITH_HEALTH_CHUNK = env.int("AEROLITH_HEALTH_CHUNK", default=20)
# Customer databases (SPEC §7). Free/Starter databases are schemas in this database on the
# region's shared cluster. SQL over HTTP runs one statement with a statement timeout and a
# row cap by plan code ("custom" also covers any tenant-specific custom plan; "default"
# any other code).
AEROLITH_SHARED_DATABASE = env("AEROLITH_SHARED_DATABASE", default="aerolith_shared")
AEROLITH_SQL_LIMITS = {
    "free": {"timeout_ms": 2_000, "max_rows": 100},
    "starter": {"timeout_ms": 5_000, "max_rows": 1_000},
    "professional": {"timeout_ms": 15_000, "max_rows": 5_000},
    "enterprise": {"timeout_ms": 30_000, "max_rows": 10_000},
    "custom": {"timeout_ms": 30_000, "max_rows": 10_000},
    "default": {"timeout_ms": 2_000, "max_rows": 100},
}
# The autoscaler evaluates this many clusters per task, in one transaction.
AEROLITH_AUTOSCALE_CHUNK = env.int("AEROLITH_AUTOSCALE_CHUNK", default=1000)

# Crypto payments (SPEC §6). Solana: the RPC endpoint (in test mode a local one: the test
# suite serves LiteSVM there, see tests/fakes/solana_rpc.py), the merchant wallet that
# receives SOL and whose associated token account receives USDC (in test mode a fixed
# test wallet), and the USDC mint (mainnet's by default; the tests create a real mint at
# that address in LiteSVM).
AEROLITH_SOLANA_RPC_URL = env("AEROLITH_SOLANA_RPC_URL", default=(
    "http://127.0.0.1:8899" if AEROLITH_TEST_MODE else "https://api.mainnet-beta.solana.com"))
AEROLITH_SOLANA_MERCHANT = env("AEROLITH_SOLANA_MERCHANT", default=(
    "8yyxXhu2CJFGGHViFZqDqKkJk4rvM3PvoHqiWU1fvBWN" if AEROLITH_TEST_MODE else ""))
AEROLITH_USDC_MINT = env("AEROLITH_USDC_MINT", default="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
AEROLITH_SOLANA_RPC_TIMEOUT = env.float("AEROLITH_SOLANA_RPC_TIMEOUT", default=10.0)
AEROLITH_SOLANA_RPC_RETRIES = env.int("AEROLITH_SOLANA_RPC_RETRIES", default=4)
AEROLITH_SOLANA_RPC_BACKOFF = env.float("AEROLITH_SOLANA_RPC_BACKOFF", default=0.5)
# A quote locks its rate this long; expired and settled quotes are still watched this long
# for late or extra payments; a quote paid but not final after its expiry plus the
# processing timeout becomes invalid (staff resolve it).
AEROLITH_CRYPTO_QUOTE_MINUTES = env.int("AEROLITH_CRYPTO_QUOTE_MINUTES", default=15)
AEROLITH_CRYPTO_WATCH_HOURS = env.int("AEROLITH_CRYPTO_WATCH_HOURS", default=24)
AEROLITH_CRYPTO_PROCESSING_TIMEOUT_MINUTES = env.int("AEROLITH_CRYPTO_PROCESSING_TIMEOUT_MINUTES",
                                                     default=60)
# SOL (and TRX) rates: an HTTP JSON endpoint answering CoinGecko's simple-price shape,
# {"solana": {"usd": 142.17}} ("{ids}" in the URL is replaced by the coin ids). Without
# one, or when it fails, the fallback rate staff set in the admin (Crypto rates) is used;
# its first value comes from AEROLITH_SOL_FALLBACK_USD (150 in test mode).
AEROLITH_RATE_SOURCE_URL = env("AEROLITH_RATE_SOURCE_URL", default="")
AEROLITH_RATE_SOURCE_TIMEOUT = env.float("AEROLITH_RATE_SOURCE_TIMEOUT", default=5.0)
AEROLITH_SOL_FALLBACK_USD = env("AEROLITH_SOL_FALLBACK_USD", default="150" if AEROLITH_TEST_MODE else "")
# Tron (TRX, USDT-TRC20): each quote gets its own deposit address, derived from the
# merchant's account-level extended public key (BIP44 m/44'/195'/0', receive chain) at an
# index from a database sequence; no private key is needed to receive. In test mode the
# default is the xpub of the public BIP39 test mnemonic "abandon … about" (never use it for
# real money). Payments are read from TronGrid (an API key is sent as TRON-PRO-API-KEY when
# set; in test mode a local fake, `python -m tests.fakes.trongrid`); only the real USDT
# contract counts (mainnet's by default).
TRON_TEST_XPUB = ("xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJ"
                  "okZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd")
AEROLITH_TRON_XPUB = env("AEROLITH_TRON_XPUB", default=TRON_TEST_XPUB if AEROLITH_TEST_MODE else "")
AEROLITH_TRONGRID_URL = env("AEROLITH_TRONGRID_URL", default=(
    "http://127.0.0.1:8090" if AEROLITH_TEST_MODE else "https://api.trongrid.io"))
AEROLITH_TRONGRID_API_KEY = env("AEROLITH_TRONGRID_API_KEY", default="")
AEROLITH_USDT_CONTRACT = env("AEROLITH_USDT_CONTRACT", default="TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")
AEROLITH_TRONGRID_TIMEOUT = env.float("AEROLITH_TRONGRID_TIMEOUT", default=10.0)
AEROLITH_TRONGRID_RETRIES = env.int("AEROLITH_TRONGRID_RETRIES", default=4)
AEROLITH_TRONGRID_BACKOFF = env.float("AEROLITH_TRONGRID_BACKOFF", default=0.5)
# Sweeps (billing/services/sweeping.py): where swept coins go (default: the account's
# internal address 1/0, the treasury that also funds USDT sweeps' energy), and the TRX
# (in sun) sent to a deposit address before its USDT is swept, also the TRC20 fee_limit.
AEROLITH_TRON_MERCHANT = env("AEROLITH_TRON_MERCHANT", default="")
AEROLITH_TRON_SWEEP_FEE_LIMIT = env.int("AEROLITH_TRON_SWEEP_FEE_LIMIT", default=30_000_000)
AEROLITH_TRX_FALLBACK_USD = env("AEROLITH_TRX_FALLBACK_USD", default="0.25" if AEROLITH_TEST_MODE else "")

# Secrets at rest (SPEC §8, aerolith/crypto.py): comma-separated base64 32-byte keys, newest
# first. Empty in test mode uses a public, deterministic test-only key; refused otherwise.
AEROLITH_SECRET_KEYS = env("AEROLITH_SECRET_KEYS", default="")

# Metering (SPEC §5). Events may be this late or this early; ids are remembered this long.
AEROLITH_USAGE_MAX_AGE_DAYS = env.int("AEROLITH_USAGE_MAX_AGE_DAYS", default=35)
AEROLITH_USAGE_MAX_FUTURE_SECONDS = env.int("AEROLITH_USAGE_MAX_FUTURE_SECONDS", default=300)
AEROLITH_USAGE_IDEMPOTENCY_DAYS = env.int("AEROLITH_USAGE_IDEMPOTENCY_DAYS", default=40)
AEROLITH_USAGE_RAW_RETENTION_DAYS = env.int("AEROLITH_USAGE_RAW_RETENTION_DAYS", default=90)
AEROLITH_USAGE_HOURLY_RETENTION_DAYS = env.int("AEROLITH_USAGE_HOURLY_RETENTION_DAYS", default=397)
AEROLITH_USAGE_MAX_BODY_BYTES = env.int("AEROLITH_USAGE_MAX_BODY_BYTES", default=16 * 1024 * 1024)
# API rate limits per plan (SPEC §8, metering/ratelimits.py). The test settings turn them
# off except in the tests about them, so that a burst of test requests is not refused.
AEROLITH_RATE_LIMITS = env.bool("AEROLITH_RATE_LIMITS", default=True)
# Prometheus /metrics (aerolith/metrics.py), public domain only: scrapers send
# `Authorization: Bearer <this>`; signed-in staff need none. Empty: staff only. Test mode has
# a known default (load_demo prints it); set your own anywhere else.
AEROLITH_METRICS_TOKEN = env("AEROLITH_METRICS_TOKEN",
                             default="aerolith-test-metrics-token" if AEROLITH_TEST_MODE else "")

# Billing schedules (SPEC §3, §4): the defaults of the BillingSettings row staff edit.
AEROLITH_TRIAL_DAYS = env.int("AEROLITH_TRIAL_DAYS", default=14)
AEROLITH_TRIAL_REMINDER_DAYS = env.list("AEROLITH_TRIAL_REMINDER_DAYS", cast=int, default=[3, 1])
AEROLITH_DUNNING_RETRY_DAYS = env.list("AEROLITH_DUNNING_RETRY_DAYS", cast=int, default=[1, 3, 5, 7])
AEROLITH_GRACE_DAYS = env.int("AEROLITH_GRACE_DAYS", default=7)
AEROLITH_SUSPENSION_DAYS = env.int("AEROLITH_SUSPENSION_DAYS", default=30)
AEROLITH_RETENTION_DAYS = env.int("AEROLITH_RETENTION_DAYS", default=30)
# The payment gateway for cards: "testmode" honours Stripe's test payment method ids
# in-process; "stripe" talks to Stripe with the official library (scripts/run.py points it
# at the local Stripe fake in test mode when no key is set).
AEROLITH_CARD_GATEWAY = env("AEROLITH_CARD_GATEWAY", default="testmode")
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")
# The signing secret of the /webhooks/stripe/ endpoint (whsec_…); webhooks are refused
# without it. Signatures older than the tolerance are refused (replays).
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=20.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
# Signup takes a ready schema from this pool (see tenants/services/schemas.py).
AEROLITH_SCHEMA_POOL_SIZE = env.int("AEROLITH_SCHEMA_POOL_SIZE", default=5)
AEROLITH_RESERVED_SLUGS = frozenset(
    env.list(
        "AEROLITH_RESERVED_SLUGS",
        default=[
            "www", "api", "admin", "public", "static", "media", "app", "apps", "mail",
            "email", "smtp", "ftp", "status", "help", "support", "docs", "blog", "billing",
            "login", "signup", "auth", "sso", "dashboard", "portal", "console", "metrics",
            "health", "healthz", "readyz", "webhooks", "cdn", "assets", "test", "staging",
            "dev", "aerolith", "root", "system", "tenant", "base", "internal",
        ],
    )
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "aerolith.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(tenant)s %(user)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"level": "WARNING"},
        "stripe": {"level": "WARNING"},  # the library logs every request at INFO
    },
}

# Kubernetes provider (CloudNativePG clusters). With AEROLITH_K8S_HOST the API server is
# reached directly (with AEROLITH_K8S_TOKEN as bearer token); otherwise the in-cluster
# service account when running in a pod, else a kubeconfig file (default ~/.kube/config).
AEROLITH_K8S_NAMESPACE = env("AEROLITH_K8S_NAMESPACE", default="aerolith")
AEROLITH_K8S_HOST = env("AEROLITH_K8S_HOST", default="")
AEROLITH_K8S_TOKEN = env("AEROLITH_K8S_TOKEN", default="")
AEROLITH_K8S_VERIFY_SSL = env.bool("AEROLITH_K8S_VERIFY_SSL", default=True)
AEROLITH_K8S_KUBECONFIG = env("AEROLITH_K8S_KUBECONFIG", default="")
AEROLITH_K8S_PG_IMAGE = env("AEROLITH_K8S_PG_IMAGE", default="")  # empty: the operator's default
AEROLITH_K8S_STORAGE_SIZE = env("AEROLITH_K8S_STORAGE_SIZE", default="20Gi")
