"""Staff console: only staff, only on the public domain; pages render with tenant-private
data fetched from the right schema; actions call services and report what they did."""
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse as _reverse

from tenants.models import AuditEvent, TestClock, User
from tests.conftest import PASSWORD, PUBLIC_HOST, host_of, make_key, staff_client


def reverse(name, args=()):
    return _reverse(name, args=args, urlconf="aerolith.urls_public")


@pytest.fixture
def staff(db):
    return User.objects.create_superuser("ops@aerolith.test", PASSWORD)


@pytest.fixture
def console(staff):
    return staff_client(staff)


def test_admin_requires_staff(db):
    member = User.objects.get(email="owner@alice.test")
    client = Client(HTTP_HOST=PUBLIC_HOST)
    client.force_login(member)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_is_not_served_on_tenant_domains(staff):
    client = Client(HTTP_HOST=host_of("alice"))
    client.force_login(staff)
    assert client.get("/admin/").status_code == 404


@pytest.mark.parametrize("page", [
    "/admin/", "/admin/tenants/tenant/", "/admin/tenants/user/", "/admin/tenants/membership/",
    "/admin/tenants/auditevent/", "/admin/tenants/scheduledjob/", "/admin/tenants/testclock/",
    "/admin/tenants/pooledschema/", "/admin/billing/plan/", "/admin/billing/subscription/",
    "/admin/django_celery_beat/periodictask/",
])
def test_every_console_page_renders(console, page):
    assert console.get(page).status_code == 200


def test_tenant_page_shows_domains_members_and_api_key_metadata_without_secrets(console, alice):
    secret = make_key(alice, ["read"], name="deploy-bot")
    response = console.get(reverse("admin:tenants_tenant_change", args=[alice.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "alice.aerolith.localhost" in html and "owner@alice.test" in html
    assert "deploy-bot" in html
    assert secret.split(".", 1)[1] not in html


def test_audit_log_is_read_only_in_the_console(console, alice):
    event = AuditEvent.objects.filter(tenant=alice).first()
    url = reverse("admin:tenants_auditevent_change", args=[event.pk])
    assert console.get(url).status_code == 200  # viewable
    assert console.post(url, {"action": "tampered"}).status_code == 403
    assert console.get(reverse("admin:tenants_auditevent_delete", args=[event.pk])).status_code == 403
    event.refresh_from_db()
    assert event.action != "tampered"


def test_advance_action_moves_the_clock_and_reports_it(console, alice, settings):
    settings.AEROLITH_TEST_MODE = True
    response = console.post("/admin/tenants/tenant/", {
        "action": "advance_one_day", "_selected_action": [alice.pk]}, follow=True)
    assert response.status_code == 200
    assert "advanced the clock of 1 tenant(s): alice: now" in response.content.decode()
    clock = TestClock.objects.get(tenant=alice)
    assert AuditEvent.objects.filter(tenant=alice, action="test_clock.advanced",
                                     actor_label="staff:ops@aerolith.test").exists()
    assert clock.frozen_time > clock.created_at


def test_clock_actions_outside_test_mode_say_why_and_change_nothing(console, alice, settings):
    settings.AEROLITH_TEST_MODE = False
    response = console.post("/admin/tenants/tenant/", {
        "action": "attach_test_clock", "_selected_action": [alice.pk]}, follow=True)
    assert "Test clocks exist only when AEROLITH_TEST_MODE=1." in response.content.decode()
    assert not TestClock.objects.filter(tenant=alice).exists()


def test_moving_a_test_clock_backwards_in_the_console_is_refused(console, alice, settings):
    settings.AEROLITH_TEST_MODE = True
    console.post("/admin/tenants/tenant/", {"action": "attach_test_clock",
                                             "_selected_action": [alice.pk]})
    clock = TestClock.objects.get(tenant=alice)
    earlier = clock.frozen_time - timedelta(days=2)
    response = console.post(reverse("admin:tenants_testclock_change", args=[clock.pk]), {
        "frozen_time_0": earlier.strftime("%Y-%m-%d"), "frozen_time_1": earlier.strftime("%H:%M:%S"),
    }, follow=True)
    assert "it only moves forward" in response.content.decode()
    before = clock.frozen_time
    clock.refresh_from_db()
    assert clock.frozen_time == before


def test_staff_edit_of_a_tenant_is_audited(console, alice):
    response = console.post(reverse("admin:tenants_tenant_change", args=[alice.pk]), {
        "name": "Alice Renamed", "region": alice.region,
        "domains-TOTAL_FORMS": "1", "domains-INITIAL_FORMS": "1", "domains-MIN_NUM_FORMS": "0",
        "domains-MAX_NUM_FORMS": "1000", "domains-0-id": alice.domains.get().pk,
        "domains-0-tenant": alice.pk,
        "memberships-TOTAL_FORMS": str(alice.memberships.count()),
        "memberships-INITIAL_FORMS": str(alice.memberships.count()),
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
        **{f"memberships-{i}-id": m.pk for i, m in enumerate(alice.memberships.all())},
        **{f"memberships-{i}-tenant": alice.pk for i, _ in enumerate(alice.memberships.all())},
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditEvent.objects.get(tenant=alice, action="tenant.updated_by_staff")
    assert entry.before == {"name": "Alice Ltd"} and entry.after == {"name": "Alice Renamed"}
