"""The usage page of the portal and the staff console's usage views render real figures
and charts, and show a tenant only its own usage."""

import pytest
from django.test import Client
from django.urls import reverse

from aerolith import clock
from metering.services.ingest import usage_ingest
from tenants.models import User
from tests.conftest import PASSWORD, host_of, staff_client


def _record(tenant, meter, quantity, event_id, at=None):
    at = at or clock.now(tenant)  # the session tenants' periods began moments ago
    result = usage_ingest(tenant=tenant, events=[{"id": event_id, "meter": meter,
                                                  "quantity": quantity,
                                                  "timestamp": at.isoformat()}])
    assert result.accepted == 1


def _portal(tenant, email):
    client = Client(HTTP_HOST=host_of(tenant.slug))
    client.force_login(User.objects.get(email=email))
    return client


@pytest.mark.django_db
def test_usage_page_shows_gauges_projection_and_a_chart_per_meter(alice):
    _record(alice, "compute_hours", 42, "page-1")
    html = _portal(alice, "owner@alice.test").get("/usage").content.decode()
    assert "Usage this period" in html
    assert "42 of 100 hours (42%)" in html  # starter plan: 100 compute hours included
    assert html.count("<svg") == 4  # one chart per built-in meter
    assert "Compute per day" in html and "(hours)" in html
    assert "projected bill" in html


@pytest.mark.django_db
def test_usage_page_never_shows_another_tenants_usage(alice, bob):
    _record(alice, "compute_hours", 77, "page-iso")
    html = _portal(bob, "owner@bob.test").get("/usage").content.decode()
    assert "77 of" not in html
    alice_owner = _portal(alice, "owner@alice.test")
    alice_owner.force_login(User.objects.get(email="owner@bob.test"))
    assert alice_owner.get("/usage").status_code == 404  # bob's user on alice's domain


@pytest.mark.django_db
def test_usage_page_requires_sign_in(alice):
    response = Client(HTTP_HOST=host_of("alice")).get("/usage")
    assert response.status_code == 302 and "/login" in response["Location"]


@pytest.mark.django_db
def test_staff_console_shows_meters_and_a_tenants_usage_with_charts(alice):
    _record(alice, "compute_hours", 5, "console-1")
    staff = User.objects.create_superuser("ops@aerolith.test", PASSWORD)
    console = staff_client(staff)
    assert console.get("/admin/metering/meter/").status_code == 200
    listing = console.get("/admin/metering/tenantusage/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    detail = console.get(reverse("admin:metering_tenantusage_change", args=[alice.pk],
                                 urlconf="aerolith.urls_public")).content.decode()
    assert "5 of 100 hours" in detail
    assert "<svg" in detail and "Daily usage, last 30 days" in detail


@pytest.mark.django_db
def test_staff_cannot_make_a_unique_count_meter_without_its_property(db):
    staff = User.objects.create_superuser("ops2@aerolith.test", PASSWORD)
    console = staff_client(staff)
    response = console.post("/admin/metering/meter/add/", {
        "code": "active_users", "name": "Active users", "unit": "users",
        "aggregation": "unique_count", "unique_property": "", "unit_price_cents": "5",
        "price_per": "1", "is_active": "on"})
    assert response.status_code == 200
    assert "counts distinct values of one event property" in response.content.decode()
    from metering.models import Meter
    assert not Meter.objects.filter(code="active_users").exists()
