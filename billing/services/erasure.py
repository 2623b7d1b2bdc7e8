"""What billing forgets when a tenant's data is erased (tenants.services.erasure).

Invoices, their lines, payments, refunds, disputes, crypto quotes and the balance ledger
are kept: tax and accounting law requires invoices and the payments against them to be
retained for years (ten in some EU countries), and they name the organisation, not a
person. Cards on file are removed: they are only useful to charge again, which will not
happen, and brand, last four digits and expiry describe a person's card. The Stripe
customer id stays so that a late refund or dispute can still be matched.
"""
from ..models import PaymentMethod


def billing_personal_data_erase(*, tenant) -> dict:
    """Delete the tenant's payment methods (payments keep their amounts and references;
    their link to the card becomes empty). Runs inside the caller's transaction."""
    cards, _ = PaymentMethod.objects.filter(tenant=tenant).delete()
    return {"payment_methods": cards}
