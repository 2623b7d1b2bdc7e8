"""The subscription API (SPEC §10): read, preview and change the plan, cancel and resume."""
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from billing.models import Invoice
from tenants.models import Tenant

from ..conftest import assert_problem, make_key
from .api_support import advance, billing_state, client_as, convert, grant_credit, subscription

SUB = "/api/v1/subscription"
SECOND = timedelta(seconds=1)


def _prorated(cents: int, start: datetime, end: datetime, at: datetime) -> int:
    """By hand: the share of `cents` for the whole seconds left of the period, half up."""
    share = Decimal(cents) * ((end - at) // SECOND) / ((end - start) // SECOND)
    return int(share.quantize(Decimal(1), ROUND_HALF_UP))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- reading ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_trial_shows_its_end_and_no_card(alice):
    body = client_as(alice).get(SUB).json()
    sub = subscription(alice)
    assert body["plan"] == "starter" and body["plan_name"] == "Starter"
    assert body["status"] == "trialing" and _time(body["trial_end"]) == sub.trial_end
    assert body["trial_outcome"] is None and body["pending_plan"] is None
    assert body["balance_cents"] == 0 and body["default_payment_method"] is None
    assert body["past_due_since"] is None and body["suspended_at"] is None
    assert body["cancel_at_period_end"] is False


@pytest.mark.django_db
def test_a_converted_subscription_shows_card_balance_and_pending_downgrade(alice):
    convert(alice)
    grant_credit(alice, 750)
    client = client_as(alice)
    response = client.post(f"{SUB}/change", {"plan": "free"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["invoice"] is None  # a downgrade waits for the period end
    body = client.get(SUB).json()
    assert body["plan"] == "starter" and body["pending_plan"] == "free"
    assert body["trial_outcome"] == "converted" and body["status"] == "active"
    assert body["balance_cents"] == 750
    card = body["default_payment_method"]
    assert card["brand"] == "visa" and card["last4"] == "4242" and card["exp_year"] == 2034
    assert card["id"] == subscription(alice).default_payment_method_id
    assert _time(body["current_period_start"]) == subscription(alice).trial_end


# --- preview and change ------------------------------------------------------------------------

@pytest.mark.django_db
def test_upgrade_invoices_exactly_the_preview_to_the_cent(alice):
    sub = convert(alice)
    advance(alice, days=10, seconds=12345)
    client = client_as(alice)
    preview = client.post(f"{SUB}/preview-change", {"plan": "professional"}, format="json")
    assert preview.status_code == 200, preview.content
    preview = preview.json()
    start, end, at = sub.current_period_start, sub.current_period_end, _time(preview["proration_at"])
    assert timedelta(days=10, seconds=12345) <= at - start <= timedelta(days=10, seconds=12347)
    credit, charge = _prorated(2900, start, end, at), _prorated(9900, start, end, at)
    assert preview["direction"] == "upgrade" and preview["when"] == "now"
    assert [(line["kind"], line["amount_cents"]) for line in preview["lines"]] == [
        ("proration", -credit), ("proration", charge)]
    assert [line["unit_amount"] for line in preview["lines"]] == ["-2900", "9900"]
    assert preview["subtotal_cents"] == preview["total_cents"] == charge - credit
    assert preview["amount_due_now_cents"] == charge - credit > 0
    assert preview["credit_applied_cents"] == preview["balance_credit_cents"] == 0
    assert subscription(alice).plan.code == "starter"  # a preview changes nothing

    advance(alice, minutes=20)  # the user reads the preview, then confirms
    response = client.post(f"{SUB}/change", {"plan": "professional", "when": "now",
                                             "proration_at": preview["proration_at"]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["subscription"]["plan"] == "professional"
    invoice = body["invoice"]
    assert invoice["lines"] == preview["lines"]
    assert (invoice["subtotal_cents"], invoice["total_cents"], invoice["amount_due_cents"]) == (
        preview["subtotal_cents"], preview["total_cents"], preview["amount_due_now_cents"])
    assert invoice["reason"] == "plan_change" and invoice["status"] == "open"
    assert client.get(f"/api/v1/invoices/{invoice['number']}").json() == invoice


@pytest.mark.django_db
def test_balance_credit_shows_in_the_preview_as_on_the_invoice(alice):
    convert(alice)
    grant_credit(alice, 1000)
    advance(alice, days=3)
    client = client_as(alice)
    preview = client.post(f"{SUB}/preview-change", {"plan": "enterprise"}, format="json").json()
    assert preview["lines"][-1]["kind"] == "credit" and preview["lines"][-1]["amount_cents"] == -1000
    assert preview["credit_applied_cents"] == 1000
    assert preview["total_cents"] == preview["subtotal_cents"] - 1000 == preview["amount_due_now_cents"]
    assert sum(line["amount_cents"] for line in preview["lines"]) == preview["total_cents"]
    body = client.post(f"{SUB}/change", {"plan": "enterprise", "proration_at": preview["proration_at"]},
                       format="json").json()
    assert body["invoice"]["lines"] == preview["lines"]
    assert body["invoice"]["credit_applied_cents"] == 1000
    assert body["subscription"]["balance_cents"] == 0


@pytest.mark.django_db
def test_downgrade_now_puts_the_unused_time_on_the_balance(alice):
    sub = convert(alice)
    advance(alice, days=5)
    client = client_as(alice)
    preview = client.post(f"{SUB}/preview-change", {"plan": "free", "when": "now"}, format="json").json()
    at = _time(preview["proration_at"])
    credit = _prorated(2900, sub.current_period_start, sub.current_period_end, at)
    assert preview["direction"] == "downgrade" and preview["amount_due_now_cents"] == 0
    assert preview["balance_credit_cents"] == credit > 0
    body = client.post(f"{SUB}/change", {"plan": "free", "when": "now",
                                         "proration_at": preview["proration_at"]}, format="json").json()
    assert body["invoice"]["lines"] == preview["lines"] and body["invoice"]["status"] == "paid"
    assert body["subscription"]["plan"] == "free" and body["subscription"]["balance_cents"] == credit


@pytest.mark.django_db
def test_a_change_during_the_trial_switches_plan_without_an_invoice(alice):
    client = client_as(alice)
    preview = client.post(f"{SUB}/preview-change", {"plan": "professional"}, format="json").json()
    assert preview["lines"] == [] and preview["amount_due_now_cents"] == 0
    body = client.post(f"{SUB}/change", {"plan": "professional"}, format="json").json()
    assert body["invoice"] is None
    assert body["subscription"]["plan"] == "professional" and body["subscription"]["status"] == "trialing"
    assert not Invoice.objects.filter(tenant=alice).exists()


@pytest.mark.django_db
def test_a_downgrade_below_current_usage_is_refused_by_preview_and_change(alice):
    client = client_as(alice)
    sent = client.post("/api/v1/usage/events", [{"id": "big-job", "meter": "compute_hours",
                                                 "quantity": 11}], format="json")
    assert sent.status_code == 202, sent.content
    before = billing_state(alice)
    for path in ("preview-change", "change"):
        body = assert_problem(client.post(f"{SUB}/{path}", {"plan": "free"}, format="json"), 400,
                              "validation_error")
        assert body["errors"][0]["code"] == "limit_below_usage", body
        assert "Free includes 10" in body["detail"], body
    assert billing_state(alice) == before


BAD_CHANGES = [
    ({"plan": "platinum"}, 400, "unknown_plan"),
    ({"plan": "starter"}, 409, "same_plan"),
    ({"plan": "custom"}, 400, "contract_plan"),  # set up by sales, not chosen
    ({"plan": "professional", "when": "tomorrow"}, 400, "invalid_choice"),
    ({"plan": "professional", "when": None}, 400, "null"),
    ({"plan": 5}, 400, "invalid"),
    ({"plan": ["professional"]}, 400, "invalid"),
    ({"plan": ""}, 400, "blank"),
    ({"plan": "x" * 41}, 400, "max_length"),
    ({}, 400, "required"),
    (["professional"], 400, "invalid"),
    ("professional", 400, "invalid"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["preview-change", "change"])
@pytest.mark.parametrize(("body", "status", "code"), BAD_CHANGES)
def test_bad_plan_changes_are_refused_and_change_nothing(alice, path, body, status, code):
    convert(alice)
    client = client_as(alice)
    before = billing_state(alice)
    problem = assert_problem(client.post(f"{SUB}/{path}", body, format="json"), status)
    codes = {e["code"] for e in problem.get("errors", [])} | {problem["code"]}
    assert code in codes, problem
    assert billing_state(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("proration_at", ["yesterday", 12, "2000-01-01T00:00:00Z", "stale"])
def test_a_bad_or_stale_proration_time_is_refused(alice, proration_at):
    convert(alice)
    client = client_as(alice)
    if proration_at == "stale":  # a preview older than an hour
        proration_at = client.post(f"{SUB}/preview-change", {"plan": "professional"},
                                   format="json").json()["proration_at"]
        advance(alice, hours=2)
    before = billing_state(alice)
    problem = assert_problem(client.post(f"{SUB}/change", {"plan": "professional",
                                                           "proration_at": proration_at},
                                         format="json"), 400)
    assert problem["errors"][0]["field"] == "proration_at", problem
    assert billing_state(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["preview-change", "change", "cancel", "resume"])
def test_malformed_or_non_json_bodies_are_refused(alice, path):
    client = client_as(alice)
    before = billing_state(alice)
    assert_problem(client.post(f"{SUB}/{path}", "{not json", content_type="application/json"), 400,
                   "malformed_request")
    assert_problem(client.post(f"{SUB}/{path}", {"plan": "enterprise"}), 415, "unsupported_media_type")
    assert billing_state(alice) == before


# --- cancel and resume -----------------------------------------------------------------------

@pytest.mark.django_db
def test_cancel_at_period_end_then_resume(alice):
    convert(alice)
    client = client_as(alice)
    body = client.post(f"{SUB}/cancel", {}, format="json").json()  # at period end by default
    assert body["cancel_at_period_end"] is True and body["status"] == "active"
    assert_problem(client.post(f"{SUB}/cancel", {"at_period_end": True}, format="json"), 409,
                   "already_cancelling")
    body = client.post(f"{SUB}/resume").json()
    assert body["cancel_at_period_end"] is False and body["status"] == "active"
    before = billing_state(alice)
    assert_problem(client.post(f"{SUB}/resume"), 409, "not_cancelling")
    assert billing_state(alice) == before


@pytest.mark.django_db
def test_cancel_now_ends_service_and_keeps_data(alice):
    convert(alice)
    client = client_as(alice)
    body = client.post(f"{SUB}/cancel", {"at_period_end": False}, format="json").json()
    assert body["status"] == "cancelled" and body["cancelled_at"] and body["data_kept_until"]
    assert Tenant.objects.get(pk=alice.pk).status == "cancelled"
    assert_problem(client.post("/api/v1/usage/events", [{"id": "late", "meter": "compute_hours",
                                                         "quantity": 1}], format="json"),
                   402, "account_suspended")
    assert_problem(client.post(f"{SUB}/cancel", {"at_period_end": False}, format="json"), 409,
                   "already_cancelled")
    assert client.get(SUB).json()["status"] == "cancelled"  # reading still works


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["yes", "false", 1, 0, None, [], {"x": 1}])
def test_at_period_end_must_be_a_boolean(alice, value):
    client = client_as(alice)
    before = billing_state(alice)
    problem = assert_problem(client.post(f"{SUB}/cancel", {"at_period_end": value}, format="json"),
                             400, "validation_error")
    assert problem["errors"][0]["field"] == "at_period_end"
    assert billing_state(alice) == before


# --- who may do what ---------------------------------------------------------------------------

WRITES = [("preview-change", {"plan": "professional"}), ("change", {"plan": "professional"}),
          ("cancel", {"at_period_end": True}), ("resume", {})]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_viewers_and_developers_cannot_change_or_cancel(alice, role):
    client = client_as(alice, role)
    assert client.get(SUB).status_code == 200
    before = billing_state(alice)
    for path, body in WRITES:
        assert_problem(client.post(f"{SUB}/{path}", body, format="json"), 403, "role_not_allowed")
    assert billing_state(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["billing", "admin"])
def test_billing_and_admin_change_the_plan_but_only_the_owner_cancels(alice, role):
    client = client_as(alice, role)
    assert client.post(f"{SUB}/preview-change", {"plan": "professional"}, format="json").status_code == 200
    assert client.post(f"{SUB}/change", {"plan": "professional"}, format="json").status_code == 200
    before = billing_state(alice)
    assert_problem(client.post(f"{SUB}/cancel", {}, format="json"), 403, "role_not_allowed")
    assert billing_state(alice) == before
    assert client_as(alice).post(f"{SUB}/cancel", {}, format="json").status_code == 200


@pytest.mark.django_db
def test_api_keys_need_the_billing_or_owner_scope(alice):
    from ..conftest import api_client

    reader = api_client("alice", make_key(alice, ["read"]))
    biller = api_client("alice", make_key(alice, ["billing:write"], name="biller"))
    owner = api_client("alice", make_key(alice, ["organization:owner"], name="owner"))
    assert_problem(reader.post(f"{SUB}/change", {"plan": "professional"}, format="json"), 403,
                   "insufficient_scope")
    assert biller.post(f"{SUB}/change", {"plan": "professional"}, format="json").status_code == 200
    assert_problem(biller.post(f"{SUB}/cancel", {}, format="json"), 403, "insufficient_scope")
    assert owner.post(f"{SUB}/cancel", {}, format="json").status_code == 200
