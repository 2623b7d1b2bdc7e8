"""The portal's billing page (SPEC §11): plan and status banners, cards on file, plan change
through a preview whose amounts the invoice repeats to the cent, cancel and resume. Every
refused form says what to do and changes nothing; roles decide who sees and posts what."""
from datetime import timedelta

import pytest
from django.test import Client

from aerolith import clock
from billing.models import Invoice, PaymentMethod, Subscription
from billing.services.collection import payment_method_attach, payment_method_detach
from metering.services.ingest import usage_ingest
from tenants.models import Tenant, User
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach
from tests.conftest import host_of, owner_principal
from tests.conftest import portal_member as member
from tests.conftest import portal_user as portal

DAY = 86400




def converted(tenant, card="pm_card_visa") -> Subscription:
    """The trial ended with a card on file: active, first invoice charged."""
    tenant_clock_attach(tenant=tenant, actor="test")
    payment_method_attach(tenant=tenant, gateway_id=card, actor=owner_principal(tenant))
    tenant_clock_advance(tenant=tenant, actor="test", seconds=15 * DAY)
    return Subscription.objects.select_related("plan").get(tenant=tenant)


def state(tenant) -> tuple:
    """Everything a billing form may change, to compare before and after a refusal."""
    subscription = Subscription.objects.get(tenant=tenant)
    return (subscription.plan_id, subscription.pending_plan_id, subscription.status,
            subscription.cancel_at_period_end, subscription.default_payment_method_id,
            subscription.balance_cents,
            list(PaymentMethod.objects.filter(tenant=tenant).values_list("pk", "detached_at")),
            list(Invoice.objects.filter(tenant=tenant).values_list("pk", "status", "amount_due_cents")))


def html(response) -> str:
    return response.content.decode()


# --- the page ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_billing_page_shows_plan_trial_banner_and_every_form_to_the_owner(alice):
    page = portal(alice).get("/billing")
    assert page.status_code == 200
    text = html(page)
    assert "Your trial of <strong>Starter</strong> ends in 14 days" in text
    assert "No card is on file" in text and "$29.00/month" in text
    assert 'name="payment_method"' in text and "pm_card_visa" in text  # the help text
    assert 'name="plan"' in text and "Professional · $99.00/month" in text
    assert "Starter · $29.00/month (current)" in text
    assert "Cancel subscription…" in text
    assert 'href="/billing"' in text and 'href="/invoices"' in text  # the navigation


@pytest.mark.django_db
def test_trial_banner_says_when_a_card_is_on_file(alice):
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    text = html(portal(alice).get("/billing"))
    assert "A card is on file (visa ···· 4242)" in text
    assert "Visa ···· 4242" in text and "Default" in text


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_members_without_billing_rights_see_the_page_without_forms(alice, role):
    page = member(alice, role).get("/billing")
    assert page.status_code == 200
    text = html(page)
    assert "Starter" in text and "Trialing" in text
    for form in ('name="payment_method"', "Preview the change", "Cancel subscription…", "Remove"):
        assert form not in text
    assert f"Your role ({role}) can see billing" in text


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_members_without_billing_rights_get_403_when_posting(alice, role):
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    client = member(alice, role)
    before = state(alice)
    card = PaymentMethod.objects.get(tenant=alice).pk
    for url, data in (("/billing/cards", {"payment_method": "pm_card_mastercard"}),
                      ("/billing/cards/remove", {"method": card}),
                      ("/billing/change", {"plan": "professional", "when": "now",
                                           "proration_at": clock.now(alice).isoformat()}),
                      ("/billing/cancel", {"when": "now"}),
                      ("/billing/resume", {})):
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert "cannot" in html(response)
    assert client.get("/billing/change/preview", {"plan": "professional"}).status_code == 403
    assert state(alice) == before


@pytest.mark.django_db
def test_billing_members_manage_cards_and_plans_but_only_the_owner_cancels(alice):
    billing = member(alice, "billing")
    assert billing.post("/billing/cards", {"payment_method": "pm_card_visa"}).status_code == 302
    assert billing.get("/billing/change/preview", {"plan": "professional"}).status_code == 200
    text = html(billing.get("/billing"))
    assert "Cancel subscription…" not in text
    admin = member(alice, "admin")
    before = state(alice)
    assert admin.get("/billing/cancel").status_code == 403
    assert admin.post("/billing/cancel", {"when": "now"}).status_code == 403
    assert state(alice) == before


@pytest.mark.django_db
def test_billing_page_needs_sign_in_and_is_404_for_other_tenants_members(alice, bob, charlie):
    anonymous = Client(HTTP_HOST=host_of("alice")).get("/billing")
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]
    for intruder in ("owner@bob.test", "owner@charlie.test"):
        client = portal(alice, intruder)
        assert client.get("/billing").status_code == 404
        assert client.post("/billing/cards", {"payment_method": "pm_card_visa"}).status_code == 404
        assert client.post("/billing/cancel", {"when": "now"}).status_code == 404
    assert not PaymentMethod.objects.filter(tenant=alice).exists()
    assert Subscription.objects.get(tenant=alice).status == "trialing"


@pytest.mark.django_db
def test_forms_need_the_csrf_token(alice):
    client = Client(HTTP_HOST=host_of("alice"), enforce_csrf_checks=True)
    client.force_login(User.objects.get(email="owner@alice.test"))
    assert client.post("/billing/cards", {"payment_method": "pm_card_visa"}).status_code == 403
    assert not PaymentMethod.objects.filter(tenant=alice).exists()
    page = html(client.get("/billing"))
    assert 'name="csrfmiddlewaretoken"' in page


# --- cards ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_owner_adds_a_card_and_removes_it(alice):
    client = portal(alice)
    response = client.post("/billing/cards", {"payment_method": " pm_card_mastercard ",
                                              "make_default": "on"})
    assert response.status_code == 302 and response["Location"] == "/billing"
    card = PaymentMethod.objects.get(tenant=alice)
    assert Subscription.objects.get(tenant=alice).default_payment_method_id == card.pk
    text = html(client.get("/billing"))
    assert "Added mastercard ···· 4444." in text and "Mastercard ···· 4444" in text
    response = client.post("/billing/cards/remove", {"method": card.pk})
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.detached_at is not None
    assert Subscription.objects.get(tenant=alice).default_payment_method_id is None
    assert "No card on file." in html(client.get("/billing"))


@pytest.mark.django_db
@pytest.mark.parametrize("value, message", [
    ("", "This field is required."),
    ("4242424242424242", "Give a Stripe payment method id such as pm_card_visa."),
    ("pm_nope", "No such payment method: &#x27;pm_nope&#x27;. In test mode use one of Stripe"),
    ("pm_card_visa", "This card is already on file."),
])
def test_adding_a_bad_card_says_what_to_do_and_changes_nothing(alice, value, message):
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    before = state(alice)
    page = portal(alice).post("/billing/cards", {"payment_method": value})
    assert page.status_code == 400
    assert 'class="errorlist"' in html(page) and message in html(page), html(page)
    assert state(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("value, message", [
    ("", "Choose a card from the list to remove."),
    ("abc", "Choose a card from the list to remove."),
    ("99999999", "No such card on file."),
    ("bob", "No such card on file."),  # another tenant's card
])
def test_removing_a_card_that_is_not_ours_is_refused(alice, bob, value, message):
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    bobs = payment_method_attach(tenant=bob, gateway_id="pm_card_amex", actor=owner_principal(bob))
    before, bob_before = state(alice), state(bob)
    page = portal(alice).post("/billing/cards/remove", {"method": bobs.pk if value == "bob" else value})
    assert page.status_code == 400 and message in html(page)
    assert state(alice) == before and state(bob) == bob_before


@pytest.mark.django_db
def test_owner_makes_another_card_the_default(alice):
    visa = payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    master = payment_method_attach(tenant=alice, gateway_id="pm_card_mastercard", make_default=False,
                                   actor=owner_principal(alice))
    client = portal(alice)
    text = html(client.get("/billing"))
    # one button, on the card that is not the default
    assert text.count("Make default") == 1
    assert 'action="/billing/cards/default"' in text and f'name="method" value="{master.pk}"' in text
    response = client.post("/billing/cards/default", {"method": master.pk})
    assert response.status_code == 302 and response["Location"] == "/billing"
    assert Subscription.objects.get(tenant=alice).default_payment_method_id == master.pk
    text = html(client.get("/billing"))
    assert "Mastercard ···· 4444 is now the default" in text
    assert text.count("Make default") == 1 and f'name="method" value="{visa.pk}"' in text
    assert client.post("/billing/cards/default", {"method": visa.pk}).status_code == 302
    assert Subscription.objects.get(tenant=alice).default_payment_method_id == visa.pk


@pytest.mark.django_db
def test_the_make_default_button_needs_the_csrf_token(alice):
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    master = payment_method_attach(tenant=alice, gateway_id="pm_card_mastercard", make_default=False,
                                   actor=owner_principal(alice))
    client = Client(HTTP_HOST=host_of("alice"), enforce_csrf_checks=True)
    client.force_login(User.objects.get(email="owner@alice.test"))
    before = state(alice)
    assert client.post("/billing/cards/default", {"method": master.pk}).status_code == 403
    assert state(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_members_without_billing_rights_cannot_make_a_card_the_default(alice, role):
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    master = payment_method_attach(tenant=alice, gateway_id="pm_card_mastercard", make_default=False,
                                   actor=owner_principal(alice))
    client = member(alice, role)
    assert "Make default" not in html(client.get("/billing"))
    before = state(alice)
    response = client.post("/billing/cards/default", {"method": master.pk})
    assert response.status_code == 403 and "cannot" in html(response)
    assert state(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("value, message", [
    ("", "Choose a card from the list to make the default."),
    ("abc", "Choose a card from the list to make the default."),
    ("99999999", "No such card on file."),
    ("removed", "No such card on file."),
    ("bob", "No such card on file."),  # another tenant's card
])
def test_making_a_card_that_is_not_ours_the_default_is_refused(alice, bob, value, message):
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    removed = payment_method_attach(tenant=alice, gateway_id="pm_card_mastercard", make_default=False,
                                    actor=owner_principal(alice))
    payment_method_detach(tenant=alice, method_id=removed.pk, actor=owner_principal(alice))
    bobs = payment_method_attach(tenant=bob, gateway_id="pm_card_amex", actor=owner_principal(bob))
    before, bob_before = state(alice), state(bob)
    method = {"bob": bobs.pk, "removed": removed.pk}.get(value, value)
    page = portal(alice).post("/billing/cards/default", {"method": method})
    assert page.status_code == 400 and 'class="errorlist"' in html(page) and message in html(page)
    assert state(alice) == before and state(bob) == bob_before


# --- plan change ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_upgrade_preview_is_exactly_what_the_confirmed_change_invoices(alice):
    subscription = converted(alice)
    Subscription.objects.filter(pk=subscription.pk).update(balance_cents=700)
    tenant_clock_advance(tenant=alice, actor="test", seconds=9 * DAY + 3 * 3600 + 17)
    client = portal(alice)
    page = client.get("/billing/change/preview", {"plan": "professional", "when": ""})
    assert page.status_code == 200
    preview = page.context["preview"]
    assert preview.when == "now" and preview.direction == "upgrade" and len(preview.lines) == 2
    text = html(page)
    from aerolith.money import usd
    for line in preview.lines:
        assert line.description in text and usd(line.amount_cents) in text
    assert preview.credit_applied_cents == 700 and "-$7.00" in text
    assert f'id="amount-due-now">{usd(preview.amount_due_now_cents)}<' in text
    assert f"Confirm and pay {usd(preview.amount_due_now_cents)}" in text
    confirm = page.context["confirm"].initial
    assert f'value="{confirm["proration_at"]}"' in text

    tenant_clock_advance(tenant=alice, actor="test", seconds=40)  # the user reads the page
    response = client.post("/billing/change", confirm)
    invoice = Invoice.objects.get(tenant=alice, reason="plan_change")
    assert response.status_code == 302 and response["Location"] == f"/invoices/{invoice.number}"
    amounts = list(invoice.lines.order_by("position").values_list("description", "amount_cents"))
    assert amounts == [(line.description, line.amount_cents) for line in preview.lines] + [
        ("Credit from your balance", -700)]
    assert (invoice.subtotal_cents, invoice.credit_applied_cents, invoice.total_cents,
            invoice.amount_due_cents) == (preview.subtotal_cents, preview.credit_applied_cents,
                                          preview.total_cents, preview.amount_due_now_cents)
    assert Subscription.objects.get(tenant=alice).plan.code == "professional"
    assert f"Invoice {invoice.number} for {usd(invoice.total_cents)} was issued." in html(
        client.get(response["Location"]))


@pytest.mark.django_db
def test_downgrade_at_period_end_is_previewed_then_pending(alice):
    subscription = converted(alice)
    client = portal(alice)
    page = client.get("/billing/change/preview", {"plan": "free"})
    assert page.status_code == 200 and page.context["preview"].when == "period_end"
    assert "end of the period" in html(page) and "Confirm the change" in html(page)
    response = client.post("/billing/change", page.context["confirm"].initial)
    assert response.status_code == 302 and response["Location"] == "/billing"
    subscription.refresh_from_db()
    assert subscription.pending_plan.code == "free" and subscription.plan.code == "starter"
    text = html(client.get("/billing"))
    assert "You move to <strong>Free</strong>" in text
    assert f"{subscription.current_period_end:%-d %b %Y}" in text
    assert not Invoice.objects.filter(tenant=alice, reason="plan_change").exists()


@pytest.mark.django_db
def test_downgrade_now_sends_the_unused_time_to_the_balance(bob):
    converted(bob)
    tenant_clock_advance(tenant=bob, actor="test", seconds=10 * DAY)
    client = portal(bob)
    page = client.get("/billing/change/preview", {"plan": "starter", "when": "now"})
    preview = page.context["preview"]
    assert preview.amount_due_now_cents == 0 and preview.balance_credit_cents > 0
    from aerolith.money import usd
    assert f"{usd(preview.balance_credit_cents)}</strong> of unused time goes to your balance" in html(page)
    client.post("/billing/change", page.context["confirm"].initial)
    assert Subscription.objects.get(tenant=bob).balance_cents == preview.balance_credit_cents


@pytest.mark.django_db
def test_a_trial_changes_plan_at_once_without_charge(alice):
    client = portal(alice)
    page = client.get("/billing/change/preview", {"plan": "professional"})
    assert page.status_code == 200 and "nothing is charged now" in html(page)
    assert page.context["preview"].amount_due_now_cents == 0
    client.post("/billing/change", page.context["confirm"].initial)
    assert Subscription.objects.get(tenant=alice).plan.code == "professional"
    assert not Invoice.objects.filter(tenant=alice).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("query, message", [
    ({"plan": "platinum"}, "Unknown plan &#x27;platinum&#x27;. Choose one of the plans in the list."),
    ({"plan": "starter"}, "You are already on Starter."),
    ({"plan": "custom"}, "Unknown plan &#x27;custom&#x27;"),
    ({}, "Choose a plan."),
    ({"plan": "professional", "when": "tomorrow"}, "Choose now or at the end of the period."),
])
def test_a_bad_plan_change_is_refused_on_the_billing_page(alice, query, message):
    before = state(alice)
    page = portal(alice).get("/billing/change/preview", query)
    assert page.status_code == 400
    assert 'class="errorlist"' in html(page) and message in html(page), html(page)
    assert state(alice) == before


@pytest.mark.django_db
def test_a_downgrade_below_current_usage_is_refused_saying_which_limit(alice):
    result = usage_ingest(tenant=alice, events=[{"id": "portal-limit", "meter": "compute_hours",
                                                 "quantity": 42, "timestamp": clock.now(alice).isoformat()}])
    assert result.accepted == 1
    before = state(alice)
    page = portal(alice).get("/billing/change/preview", {"plan": "free"})
    assert page.status_code == 400
    assert "Free includes 10 hours of Compute and this period has used 42." in html(page), html(page)
    assert state(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("change, message", [
    ({"proration_at": "yesterday"}, "This preview is not valid; preview the change again."),
    ({"proration_at": ""}, "This preview is not valid; preview the change again."),
    ({"proration_at": "stale"}, "This preview is more than an hour old; preview the change again."),
    ({"when": "someday"}, "Choose now or at the end of the period."),
    ({"plan": "platinum"}, "Unknown plan &#x27;platinum&#x27;"),
    ({"plan": "starter"}, "You are already on Starter."),
])
def test_a_bad_confirmation_changes_nothing(alice, change, message):
    converted(alice)
    client = portal(alice)
    confirm = client.get("/billing/change/preview", {"plan": "professional"}).context["confirm"].initial
    if change.get("proration_at") == "stale":
        tenant_clock_advance(tenant=alice, actor="test", seconds=2 * 3600)
        change = {}
    before = state(alice)
    page = client.post("/billing/change", {**confirm, **change})
    assert page.status_code == 400
    assert message in html(page), html(page)
    assert state(alice) == before


@pytest.mark.django_db
def test_a_suspended_organisation_is_told_to_pay_before_changing_plans(alice):
    subscription = converted(alice)
    now = clock.now(alice)
    Subscription.objects.filter(pk=subscription.pk).update(status="suspended", suspended_at=now)
    Tenant.objects.filter(pk=alice.pk).update(status="suspended")
    client = portal(alice)
    text = html(client.get("/billing"))
    assert "suspended for non-payment" in text and "restore full service" in text
    assert f"cancelled on {now + timedelta(days=30):%-d %b %Y}" in text
    page = client.get("/billing/change/preview", {"plan": "professional"})
    assert page.status_code == 400 and "pay the open invoices" in html(page)


# --- cancel and resume ---------------------------------------------------------------------

@pytest.mark.django_db
def test_cancel_at_period_end_then_resume(alice):
    subscription = converted(alice)
    client = portal(alice)
    page = client.get("/billing/cancel")
    assert page.status_code == 200 and "Cancel your subscription?" in html(page)
    assert 'value="period_end"' in html(page) and "checked" in html(page)
    response = client.post("/billing/cancel", {"when": "period_end"})
    assert response.status_code == 302
    assert Subscription.objects.get(tenant=alice).cancel_at_period_end
    text = html(client.get("/billing"))
    assert f"Your subscription ends on <strong>{subscription.current_period_end:%-d %b %Y}" in text
    assert "Resume subscription" in text
    assert client.post("/billing/resume").status_code == 302
    assert not Subscription.objects.get(tenant=alice).cancel_at_period_end
    assert "Your subscription continues" in html(client.get("/billing"))


@pytest.mark.django_db
def test_cancel_now_ends_the_subscription(alice):
    converted(alice)
    client = portal(alice)
    assert client.post("/billing/cancel", {"when": "now"}).status_code == 302
    subscription = Subscription.objects.get(tenant=alice)
    assert subscription.status == "cancelled"
    text = html(client.get("/billing"))
    assert "The subscription ended" in text and "Your data is kept until" in text
    assert "Preview the change" not in text and "Cancel subscription…" not in text


@pytest.mark.django_db
def test_bad_cancel_and_resume_requests_say_why_and_change_nothing(alice):
    converted(alice)
    client = portal(alice)
    before = state(alice)
    for data, message in (({"when": "tomorrow"}, "Choose at the end of the period or now."),
                          ({}, "Choose when the subscription ends.")):
        page = client.post("/billing/cancel", data)
        assert page.status_code == 400 and message in html(page)
    page = client.post("/billing/resume")
    assert page.status_code == 400
    assert "Only a subscription cancelled at period end can be resumed" in html(page)
    assert state(alice) == before
    client.post("/billing/cancel", {"when": "period_end"})
    before = state(alice)
    page = client.post("/billing/cancel", {"when": "period_end"})
    assert page.status_code == 400 and "already ends at" in html(page)
    assert state(alice) == before


@pytest.mark.django_db
def test_a_trial_cancelled_at_its_end_does_not_promise_a_conversion(alice):
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    client = portal(alice)
    client.post("/billing/cancel", {"when": "period_end"})
    text = html(client.get("/billing"))
    trial_end = Subscription.objects.get(tenant=alice).trial_end
    assert f"Your subscription ends on <strong>{trial_end:%-d %b %Y}</strong>" in text
    assert "becomes a paid subscription" not in text and "Resume subscription" in text
