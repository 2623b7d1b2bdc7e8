"""Prometheus metrics (SPEC §8): HTTP requests by route and status, usage ingestion,
Celery task outcomes, and figures read from the database at scrape time (invoices,
payments, clusters by health).

Gunicorn's workers and Celery's pool are separate processes. With PROMETHEUS_MULTIPROC_DIR
set (scripts/run.py sets it for its children and empties it at start), every process
writes its counters to files there and a scrape adds them all up (prometheus-client's
multiprocess mode); without it, the process's own registry is served. Database figures are
never stored in a process: the scrape asks PostgreSQL (three aggregate queries).

This module imports no models at the top: aerolith.celery imports it before Django is set
up, to connect the task signals.
"""
import hmac
import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

HTTP_REQUESTS = Counter(
    "aerolith_http_requests", "HTTP requests answered, by method, route pattern and status.",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "aerolith_http_request_duration_seconds", "Time to answer a request, by method and route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
USAGE_EVENTS = Counter(
    "aerolith_usage_events", "Usage events through metering's ingestion, by outcome "
    "(accepted, duplicate, rejected) and source (api: sent by customers; internal: the "
    "platform's own collectors).", ["outcome", "source"])
CELERY_TASKS = Counter(
    "aerolith_celery_tasks", "Celery task runs by task name and outcome (success, failure, "
    "retry).", ["task", "outcome"])

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Answered before URL resolution (aerolith.middleware.HealthCheckMiddleware).
FIXED_ROUTES = frozenset({"/healthz", "/readyz"})
UNMATCHED = "<unmatched>"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# --- HTTP ----------------------------------------------------------------------------------

def route_of(request) -> str:
    """The URL pattern that answered (`/api/v1/invoices/<str:number>`), never the raw path,
    so that ids and probes for missing pages do not make new series."""
    if request.path in FIXED_ROUTES:
        return request.path
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return UNMATCHED
    return "/" + match.route


class MetricsMiddleware:
    """First in MIDDLEWARE, so it times everything, health probes included."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in METHODS else "other"
        route = route_of(request)
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
        return response


# --- ingestion and tasks -------------------------------------------------------------------

def usage_ingested(*, accepted: int, duplicates: int, rejected: int, source: str) -> None:
    for outcome, n in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
        if n:
            USAGE_EVENTS.labels(outcome, source).inc(n)


def _task_name(sender) -> str:
    return getattr(sender, "name", None) or str(sender)


def _on_success(sender=None, **kwargs):
    CELERY_TASKS.labels(_task_name(sender), "success").inc()


def _on_failure(sender=None, **kwargs):
    CELERY_TASKS.labels(_task_name(sender), "failure").inc()


def _on_retry(sender=None, **kwargs):
    CELERY_TASKS.labels(_task_name(sender), "retry").inc()


def connect_task_signals() -> None:
    from celery import signals

    # weak=False: the receivers are module functions, but say so; dispatch_uid: once only.
    signals.task_success.connect(_on_success, weak=False, dispatch_uid="aerolith.metrics.ok")
    signals.task_failure.connect(_on_failure, weak=False, dispatch_uid="aerolith.metrics.fail")
    signals.task_retry.connect(_on_retry, weak=False, dispatch_uid="aerolith.metrics.retry")


# --- figures from the database -------------------------------------------------------------

class DatabaseCollector:
    """Read at scrape time from the public schema: three aggregate queries."""

    def collect(self):
        from django.db.models import Count, Q

        from billing.models import Invoice, Payment
        from provisioning.models import Cluster

        by_status = GaugeMetricFamily("aerolith_invoices", "Invoices by status.",
                                      labels=["status"])
        issued = CounterMetricFamily("aerolith_invoices_issued",
                                     "Invoices issued (finalised and numbered), ever.")
        total_issued = 0
        issued_filter = Q(finalized_at__isnull=False)
        for row in (Invoice.objects.order_by().values("status")
                    .annotate(n=Count("pk"), issued=Count("pk", filter=issued_filter))):
            by_status.add_metric([row["status"]], row["n"])
            total_issued += row["issued"]
        issued.add_metric([], total_issued)
        yield by_status
        yield issued

        payments = GaugeMetricFamily("aerolith_payments", "Payments by state and method.",
                                     labels=["status", "method"])
        for row in Payment.objects.order_by().values("status", "method").annotate(n=Count("pk")):
            payments.add_metric([row["status"], row["method"]], row["n"])
        yield payments

        clusters = GaugeMetricFamily("aerolith_clusters", "Database clusters by health.",
                                     labels=["health"])
        for row in Cluster.objects.order_by().values("health").annotate(n=Count("pk")):
            clusters.add_metric([row["health"]], row["n"])
        yield clusters


class _Scrape:
    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


def exposition() -> bytes:
    """The text served at /metrics: every process's metrics and the database figures."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client.multiprocess import MultiProcessCollector

        processes = MultiProcessCollector(None, path=directory)
    else:
        processes = REGISTRY
    return generate_latest(_Scrape(processes, DatabaseCollector()))


# --- who may scrape ------------------------------------------------------------------------

def scrape_allowed(request) -> bool:
    """`Authorization: Bearer <AEROLITH_METRICS_TOKEN>` or a signed-in staff member (who
    has passed two-factor authentication where django-otp is installed)."""
    from django.conf import settings

    token = settings.AEROLITH_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not (user.is_active and user.is_staff):
        return False
    verified = getattr(user, "is_verified", None)
    return bool(verified()) if callable(verified) else True


def metrics_view(request):
    """GET /metrics on the public domain. Anyone else gets the ordinary 404 page: the
    endpoint does not admit it exists."""
    from django.http import Http404, HttpResponse

    if not scrape_allowed(request):
        raise Http404
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


__all__ = ["CONTENT_TYPE_LATEST", "MetricsMiddleware", "connect_task_signals", "metrics_view",
           "usage_ingested"]
