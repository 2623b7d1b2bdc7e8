"""Production settings: base, behind a TLS-terminating proxy, with what
`manage.py check --deploy` asks for (tests/test_security_checks.py keeps it clean).

Required in the environment (no default, so a forgotten one stops the process instead
of running with a development value): DJANGO_SECRET_KEY (50+ random characters),
DJANGO_ALLOWED_HOSTS (e.g. `aerolith.example.com,.aerolith.example.com`) and
AEROLITH_BASE_DOMAIN. The proxy must set X-Forwarded-Proto.
"""
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import SIMPLE_JWT, env

DEBUG = False
AEROLITH_TEST_MODE = False  # never test clocks or test payment shortcuts in production

SECRET_KEY = env("DJANGO_SECRET_KEY")
if SECRET_KEY.startswith("dev-only") or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 random characters, e.g. "
                               "python -c 'import secrets; print(secrets.token_urlsafe(50))'.")
SIMPLE_JWT["SIGNING_KEY"] = env("JWT_SIGNING_KEY", default=SECRET_KEY)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
AEROLITH_BASE_DOMAIN = env("AEROLITH_BASE_DOMAIN")
AEROLITH_URL_SCHEME = env("AEROLITH_URL_SCHEME", default="https")
AEROLITH_URL_PORT = env("AEROLITH_URL_PORT", default="")

# HTTPS only: the proxy terminates TLS and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Health probes come over plain HTTP from inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True  # every tenant is a subdomain
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[
    f"https://{AEROLITH_BASE_DOMAIN}", f"https://*.{AEROLITH_BASE_DOMAIN}"])
