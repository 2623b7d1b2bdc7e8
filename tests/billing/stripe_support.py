"""The Stripe tests' setting: the product's Stripe gateway pointed at the local Stripe fake
(tests/fakes/stripe_fake) on a free port, and webhooks delivered by hand — each event the
fake sent (fake.outbox) POSTed to /webhooks/stripe/ on the public domain, signed as the
fake signed it — so a test decides when, in what order and how often they arrive."""
import http.client
import json
from urllib.parse import urlencode, urlsplit

from django.test import Client

from billing import payments
from billing.decisions import LineDraft
from billing.models import Invoice, PaymentMethod, StripeCustomer, Subscription
from billing.services.invoices import invoice_draft, invoice_finalize
from tests.fakes.stripe_fake import StripeFake

from ..conftest import PUBLIC_HOST

WEBHOOK_PATH = "/webhooks/stripe/"


def stripe_fake_running(settings):
    """A fresh fake, and the product configured to use it through the Stripe gateway. Test
    modules make it their `stripe_fake` fixture:
    `_stripe = pytest.fixture(name="stripe_fake")(stripe_fake_running)`."""
    fake = StripeFake()
    fake.start(port=0)
    settings.AEROLITH_CARD_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_aerolith_tests"
    settings.STRIPE_API_BASE = fake.url
    settings.STRIPE_WEBHOOK_SECRET = fake.webhook_secret
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    payments._load.cache_clear()
    try:
        yield fake
    finally:
        payments._load.cache_clear()
        fake.stop()


def deliver(payload: bytes, signature: str | None):
    """One webhook delivery, as Stripe makes it."""
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return Client(HTTP_HOST=PUBLIC_HOST).post(WEBHOOK_PATH, data=payload, content_type="application/json",
                                              **headers)


def deliver_outbox(fake: StripeFake, start: int = 0, *, types: tuple[str, ...] = ()) -> list:
    """Deliver the fake's events from `start` (oldest first; only `types` if given); every
    answer must be a 200."""
    answers = []
    for payload, signature in fake.outbox[start:]:
        if types and json.loads(payload)["type"] not in types:
            continue
        response = deliver(payload, signature)
        assert response.status_code == 200, response.content
        answers.append(response.json())
    return answers


def event_of(fake: StripeFake, event_type: str, *, index: int = -1) -> tuple[bytes, str]:
    """The (payload, signature) of the fake's `index`-th event of `event_type`."""
    found = [(p, s) for p, s in fake.outbox if json.loads(p)["type"] == event_type]
    assert found, (event_type, [json.loads(p)["type"] for p, _ in fake.outbox])
    return found[index]


def resigned(fake: StripeFake, event: dict, timestamp: int | None = None) -> tuple[bytes, str]:
    """An event (possibly edited by the test) signed with the endpoint's secret."""
    payload = json.dumps(event).encode()
    return payload, fake.sign(payload, timestamp)


def open_invoice(tenant, cents: int = 2900) -> Invoice:
    """An open manual invoice (29.00 by default) that nothing has charged yet."""
    subscription = Subscription.objects.get(tenant=tenant)
    draft = invoice_draft(tenant=tenant, subscription=subscription, reason="manual",
                          period_start=subscription.current_period_start,
                          period_end=subscription.current_period_end,
                          lines=[LineDraft("adjustment", "Support plan", cents)])
    return invoice_finalize(invoice=draft, actor="test", collect=False)


def customer_of(tenant) -> str:
    return StripeCustomer.objects.get(tenant=tenant).customer_id


def card_on_file(tenant) -> PaymentMethod:
    (card,) = PaymentMethod.objects.filter(tenant=tenant, detached_at__isnull=True)
    return card


def browser_post(url: str, fields: dict) -> tuple[int, str]:
    """Submit a form on one of the fake's hosted pages (Checkout, 3-D Secure) as a browser
    would; returns the status and the redirect location (not followed)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", parts.path, body=urlencode(fields),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location") or ""
    finally:
        connection.close()


def browser_get(url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def local_path(url: str) -> str:
    """The path and query of an absolute URL of ours, for the Django test client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
