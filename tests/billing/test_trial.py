"""The trial and the subscription's own choices (SPEC §3): reminders 3 days and 1 day
before the trial ends, conversion with a card, Free without one, plan changes during the
trial, cancel at period end and resume, cancel now, and plan changes refused with nothing
changed (limits below current usage, the same plan, an unknown plan)."""
import pytest
from django.core import mail

from aerolith.errors import Conflict, ValidationFailed
from billing.models import BillingSettings, Invoice
from billing.services.subscriptions import (
    subscription_cancel,
    subscription_change,
    subscription_resume,
)
from tenants.models import ScheduledJob, Tenant

from ..conftest import owner_principal
from .lifecycle import (
    DAY,
    active_since,
    advance,
    at,
    audit_actions,
    card_attach,
    invoices,
    last_audit_id,
    lines,
    recording_hook,
    subscription_of,
    trial_restart,
    usage,
)

START = at(2027, 3, 1, 9, 30)
TRIAL_END = at(2027, 3, 15, 9, 30)
OWNER_MAIL = ["owner@alice.test"]


def _subjects() -> list[str]:
    return [m.subject.removeprefix("[Aerolith] ") for m in mail.outbox]


def _pending(tenant) -> list[tuple[str, object]]:
    return list(ScheduledJob.objects.filter(tenant=tenant, status="pending").order_by("due_at", "id")
                .values_list("kind", "due_at"))


# --- reminders, conversion, fallback --------------------------------------------------------

@pytest.mark.django_db
def test_reminders_go_out_3_days_and_1_day_before_the_trial_ends(alice, django_capture_on_commit_callbacks):
    subscription = trial_restart(alice, "starter", START)
    assert (subscription.status, subscription.trial_end) == ("trialing", TRIAL_END)
    assert _pending(alice) == [("billing.trial_reminder", at(2027, 3, 12, 9, 30)),
                               ("billing.trial_reminder", at(2027, 3, 14, 9, 30)),
                               ("billing.trial_end", TRIAL_END)]
    with django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=at(2027, 3, 12, 9, 29, 59))
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=at(2027, 3, 12, 9, 30))
    assert _subjects() == ["Your trial ends in 3 days"]
    assert mail.outbox[0].to == OWNER_MAIL
    assert "Add a card to keep Starter" in mail.outbox[0].body
    card_attach(alice)
    with django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=at(2027, 3, 14, 9, 30))
    assert _subjects() == ["Your trial ends in 3 days", "Your trial ends in 1 day"]
    assert "Your card on file will be charged" in mail.outbox[1].body
    assert audit_actions(alice).count("subscription.trial_reminder_sent") == 2


@pytest.mark.django_db
def test_staff_schedule_sets_the_trial_length_and_reminders_of_new_trials(alice):
    BillingSettings.objects.update_or_create(pk=1, defaults={"trial_days": 30, "trial_reminder_days": [7]})
    subscription = trial_restart(alice, "starter", START)
    assert subscription.trial_end == START + 30 * DAY
    assert _pending(alice) == [("billing.trial_reminder", START + 23 * DAY),
                               ("billing.trial_end", START + 30 * DAY)]


@pytest.mark.django_db
def test_with_a_card_the_trial_converts_and_the_first_period_is_charged(alice, django_capture_on_commit_callbacks):
    trial_restart(alice, "starter", START)
    card_attach(alice, "pm_card_mastercard")
    with django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=TRIAL_END)
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.trial_outcome, subscription.plan.code) == (
        "active", "converted", "starter")
    assert (subscription.billing_anchor, subscription.current_period_start, subscription.current_period_end) == (
        TRIAL_END, TRIAL_END, at(2027, 4, 15, 9, 30))
    assert Tenant.objects.get(pk=alice.pk).status == "active"
    (invoice,) = invoices(alice)
    assert (invoice.reason, invoice.status, invoice.total_cents, lines(invoice)) == (
        "trial_conversion", "paid", 2900, [("plan", 2900)])
    assert (invoice.period_start, invoice.period_end) == (TRIAL_END, at(2027, 4, 15, 9, 30))
    payment = invoice.payments.get()
    assert (payment.status, payment.payment_method.last4, payment.attempt) == ("succeeded", "4444", 0)
    # charged to the card on file: announced by its receipt alone, as Stripe does
    assert _subjects() == ["Your trial ends in 3 days", "Your trial ends in 1 day",
                           f"Receipt for invoice {invoice.number}"]
    assert {tuple(m.to) for m in mail.outbox} == {tuple(OWNER_MAIL)}
    assert "subscription.trial_converted" in audit_actions(alice)
    assert _pending(alice) == [("billing.renewal", at(2027, 4, 15, 9, 30))]


@pytest.mark.django_db
def test_without_a_card_the_trial_falls_back_to_free(alice, django_capture_on_commit_callbacks):
    trial_restart(alice, "professional", START)
    with recording_hook() as hook, django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=TRIAL_END)
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.trial_outcome, subscription.plan.code) == (
        "active", "fell_back", "free")
    assert (subscription.current_period_start, subscription.current_period_end) == (
        TRIAL_END, at(2027, 4, 15, 9, 30))
    assert invoices(alice) == []
    assert hook.calls == [("plan_applied", "alice", "free")]
    assert _subjects()[-1] == "You are now on the Free plan"
    assert "no payment method at trial end" in mail.outbox[-1].body
    assert "subscription.fell_back_to_free" in audit_actions(alice)
    # Free renews without an invoice
    advance(alice, to=at(2027, 4, 15, 9, 30))
    assert invoices(alice) == []
    assert subscription_of(alice).current_period_end == at(2027, 5, 15, 9, 30)


@pytest.mark.django_db
def test_an_upgrade_during_the_trial_changes_the_plan_and_conversion_charges_the_new_price(alice):
    trial_restart(alice, "starter", START)
    advance(alice, to=at(2027, 3, 5))
    subscription, invoice = subscription_change(tenant=alice, plan_code="professional",
                                                actor=owner_principal(alice))
    assert invoice is None
    assert (subscription.status, subscription.plan.code, subscription.trial_end) == (
        "trialing", "professional", TRIAL_END)
    card_attach(alice)
    advance(alice, to=TRIAL_END)
    (conversion,) = invoices(alice)
    assert lines(conversion) == [("plan", 9900)] and conversion.status == "paid"


@pytest.mark.django_db
def test_a_downgrade_during_the_trial_applies_at_once_and_conversion_charges_the_smaller_plan(alice):
    trial_restart(alice, "professional", START)
    card_attach(alice)
    advance(alice, to=at(2027, 3, 5))
    subscription, invoice = subscription_change(tenant=alice, plan_code="starter",
                                                actor=owner_principal(alice))
    assert invoice is None
    assert (subscription.status, subscription.plan.code, subscription.pending_plan) == (
        "trialing", "starter", None)
    advance(alice, to=TRIAL_END)
    (conversion,) = invoices(alice)
    assert lines(conversion) == [("plan", 2900)] and conversion.status == "paid"


@pytest.mark.django_db
def test_choosing_free_during_the_trial_ends_it_at_once_and_its_reminders_do_nothing(
        alice, django_capture_on_commit_callbacks):
    trial_restart(alice, "starter", START)
    advance(alice, to=at(2027, 3, 5))
    with django_capture_on_commit_callbacks(execute=True):
        subscription, _ = subscription_change(tenant=alice, plan_code="free", actor=owner_principal(alice))
        assert (subscription.status, subscription.plan.code, subscription.trial_outcome) == (
            "active", "free", "fell_back")
        advance(alice, to=TRIAL_END + DAY)
    assert mail.outbox == [] and invoices(alice) == []
    assert subscription_of(alice).current_period_end == at(2027, 4, 5)


# --- cancel and resume ----------------------------------------------------------------------

@pytest.mark.django_db
def test_cancel_at_period_end_then_resume_keeps_the_subscription_renewing(
        alice, django_capture_on_commit_callbacks):
    active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 1, 20))
    owner = owner_principal(alice)
    with django_capture_on_commit_callbacks(execute=True):
        subscription = subscription_cancel(tenant=alice, at_period_end=True, actor=owner)
    assert subscription.cancel_at_period_end and subscription.status == "active"
    assert _subjects()[-1] == "Your subscription will end"
    assert "2027-02-01 00:00" in mail.outbox[-1].body
    with pytest.raises(Conflict) as twice:
        subscription_cancel(tenant=alice, at_period_end=True, actor=owner)
    assert twice.value.code == "already_cancelling"
    subscription = subscription_resume(tenant=alice, actor=owner)
    assert not subscription.cancel_at_period_end
    with pytest.raises(Conflict) as again:
        subscription_resume(tenant=alice, actor=owner)
    assert again.value.code == "not_cancelling"
    assert audit_actions(alice)[-2:] == ["subscription.cancel_scheduled", "subscription.resumed"]
    advance(alice, to=at(2027, 2, 1))
    assert subscription_of(alice).status == "active"
    (renewal,) = invoices(alice, reason="renewal")
    assert lines(renewal) == [("plan", 2900)] and renewal.status == "paid"


@pytest.mark.django_db
def test_cancel_at_period_end_ends_it_then_with_a_final_invoice_for_the_overage(
        alice, django_capture_on_commit_callbacks):
    active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 1, 20))
    usage(alice, "compute_hours", 130, at(2027, 1, 19))
    subscription_cancel(tenant=alice, at_period_end=True, actor=owner_principal(alice))
    with recording_hook() as hook, django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=at(2027, 2, 1))
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.cancelled_at, subscription.data_kept_until) == (
        "cancelled", at(2027, 2, 1), at(2027, 3, 3))
    assert not subscription.cancel_at_period_end
    (final,) = invoices(alice, reason="final")
    assert lines(final) == [("overage", 300)]  # 30 h x 10¢
    assert final.status == "paid"
    assert invoices(alice, reason="renewal") == []
    assert hook.events() == ["cancelled"]
    assert "Your subscription has ended" in _subjects()
    assert "subscription.ended_at_period_end" in audit_actions(alice)
    with pytest.raises(Conflict):
        subscription_resume(tenant=alice, actor=owner_principal(alice))
    assert _pending(alice) == []


@pytest.mark.django_db
def test_a_trial_cancelled_at_its_end_ends_without_a_charge(alice):
    trial_restart(alice, "starter", START)
    card_attach(alice)
    advance(alice, to=at(2027, 3, 5))
    subscription_cancel(tenant=alice, at_period_end=True, actor=owner_principal(alice))
    advance(alice, to=TRIAL_END + DAY)
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.cancelled_at, subscription.plan.code) == (
        "cancelled", TRIAL_END, "starter")
    assert invoices(alice) == []


@pytest.mark.django_db
def test_cancel_now_bills_the_overage_so_far_and_stops_everything(alice, django_capture_on_commit_callbacks):
    active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 1, 20, 12))
    usage(alice, "api_calls", 150_000, at(2027, 1, 10))
    usage(alice, "api_calls", 5_000, at(2027, 1, 20, 12))  # this very second: not yet in [start, now)
    owner = owner_principal(alice)
    with recording_hook() as hook, django_capture_on_commit_callbacks(execute=True):
        subscription = subscription_cancel(tenant=alice, at_period_end=False, actor=owner)
    assert (subscription.status, subscription.cancelled_at, subscription.data_kept_until) == (
        "cancelled", at(2027, 1, 20, 12), at(2027, 2, 19, 12))
    assert Tenant.objects.get(pk=alice.pk).status == "cancelled"
    assert hook.events() == ["cancelled"]
    (final,) = invoices(alice, reason="final")
    assert lines(final) == [("overage", 50)]  # 50,000 calls x 1¢/1,000
    assert (final.period_start, final.period_end) == (at(2027, 1, 1), at(2027, 1, 20, 12))
    advance(alice, seconds=0)
    final.refresh_from_db()
    assert final.status == "paid"
    with pytest.raises(Conflict) as again:
        subscription_cancel(tenant=alice, at_period_end=False, actor=owner)
    assert again.value.code == "already_cancelled"
    with pytest.raises(Conflict) as change:
        subscription_change(tenant=alice, plan_code="professional", actor=owner)
    assert change.value.code == "subscription_inactive"
    advance(alice, to=at(2027, 3, 1))  # the renewal that was due does nothing
    assert [i.reason for i in invoices(alice)] == ["trial_conversion", "final"]
    assert subscription_of(alice).status == "cancelled"


@pytest.mark.django_db
def test_cancel_now_during_the_trial_bills_nothing(alice):
    trial_restart(alice, "starter", START)
    advance(alice, to=at(2027, 3, 5))
    usage(alice, "compute_hours", 500, at(2027, 3, 4))  # trial usage is not billed
    subscription = subscription_cancel(tenant=alice, at_period_end=False, actor=owner_principal(alice))
    assert subscription.status == "cancelled"
    advance(alice, to=TRIAL_END + DAY)
    assert invoices(alice) == [] and subscription_of(alice).status == "cancelled"


# --- refused changes leave everything as it was ----------------------------------------------

def _unchanged(tenant, audit_since: int) -> None:
    subscription = subscription_of(tenant)
    assert (subscription.plan.code, subscription.pending_plan_id, subscription.status) == (
        "starter", None, "active")
    assert not Invoice.objects.filter(tenant=tenant, reason="plan_change").exists()
    assert audit_actions(tenant, audit_since) == []


@pytest.mark.django_db
@pytest.mark.parametrize("when", [None, "now"])
def test_a_downgrade_below_this_periods_usage_is_refused_naming_the_limit(alice, when):
    active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 1, 20))
    usage(alice, "api_calls", 10_001, at(2027, 1, 19))
    usage(alice, "api_calls", 50_000, at(2026, 12, 31))  # the trial's: not this period
    since = last_audit_id()
    with pytest.raises(ValidationFailed) as refused:
        subscription_change(tenant=alice, plan_code="free", when=when, actor=owner_principal(alice))
    message = "Free includes 10000 calls of API calls and this period has used 10001."
    assert refused.value.errors == {"plan": [("limit_below_usage", message)]}
    assert refused.value.explain() == message
    _unchanged(alice, since)


@pytest.mark.django_db
def test_usage_exactly_at_the_limit_allows_the_downgrade(alice):
    active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 1, 20))
    usage(alice, "api_calls", 10_000, at(2027, 1, 19))
    subscription, invoice = subscription_change(tenant=alice, plan_code="free", actor=owner_principal(alice))
    assert (subscription.plan.code, subscription.pending_plan.code, invoice) == ("starter", "free", None)
    advance(alice, to=at(2027, 2, 1))
    subscription = subscription_of(alice)
    assert subscription.plan.code == "free"
    # Free has no overage: nothing to bill for the closed period or the new one
    assert invoices(alice, reason="renewal") == []


@pytest.mark.django_db
def test_a_downgrade_with_more_databases_than_the_plan_allows_is_refused(alice):
    active_since(alice, "professional", at(2027, 1, 1))
    advance(alice, to=at(2027, 1, 20))
    since = last_audit_id()
    with recording_hook(databases=5), pytest.raises(ValidationFailed) as refused:
        subscription_change(tenant=alice, plan_code="starter", actor=owner_principal(alice))
    assert refused.value.explain() == ("Starter allows 3 database(s) and you have 5; delete 2 first.")
    subscription = subscription_of(alice)
    assert (subscription.plan.code, subscription.pending_plan_id) == ("professional", None)
    assert audit_actions(alice, since) == []


@pytest.mark.django_db
@pytest.mark.parametrize("code, error, error_code", [
    ("starter", Conflict, "same_plan"),
    ("platinum", ValidationFailed, "unknown_plan"),
    ("custom", ValidationFailed, "contract_plan"),
    (None, ValidationFailed, "unknown_plan"),
    (["professional"], ValidationFailed, "unknown_plan"),
])
def test_a_change_to_the_same_or_an_unknown_plan_is_refused(alice, code, error, error_code):
    active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 1, 20))
    since = last_audit_id()
    with pytest.raises(error) as refused:
        subscription_change(tenant=alice, plan_code=code, actor=owner_principal(alice))
    if error is Conflict:
        assert refused.value.code == error_code and "already on Starter" in refused.value.detail
    else:
        assert [c for c, _m in refused.value.errors["plan"]] == [error_code]
        if error_code == "unknown_plan":
            assert "enterprise" in refused.value.explain() and "free" in refused.value.explain()
    _unchanged(alice, since)
