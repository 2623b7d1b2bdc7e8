"""Builders for Stripe-shaped objects (https://docs.stripe.com/api), with the fields Stripe returns.

Each builder returns a fresh dict; the store keeps them and mutates them as the objects move on.
"""
import secrets
import string
import time

from .cards import EXP_MONTH, EXP_YEAR, TestCard

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"


def now() -> int:
    return int(time.time())


def _base(prefix: str, kind: str, **fields) -> dict:
    return {"id": new_id(prefix), "object": kind, "created": now(), "livemode": False, **fields}


def customer(params: dict) -> dict:
    settings = params.get("invoice_settings") or {}
    return _base(
        "cus", "customer", address=params.get("address"), balance=0, currency=None,
        default_source=None, delinquent=False, description=params.get("description"),
        discount=None, email=params.get("email"), invoice_prefix=new_id("x", 8)[2:].upper(),
        invoice_settings={"custom_fields": None,
                          "default_payment_method": settings.get("default_payment_method"),
                          "footer": None, "rendering_options": None},
        metadata=dict(params.get("metadata") or {}), name=params.get("name"),
        next_invoice_sequence=1, phone=params.get("phone"),
        preferred_locales=list(params.get("preferred_locales") or []), shipping=None,
        tax_exempt="none", test_clock=None)


def payment_method(card: TestCard, pm_id: str | None = None, customer_id: str | None = None) -> dict:
    obj = _base("pm", "payment_method", allow_redisplay="unspecified",
                billing_details={"address": {"city": None, "country": None, "line1": None,
                                             "line2": None, "postal_code": None, "state": None},
                                 "email": None, "name": None, "phone": None, "tax_id": None},
                card=card_details(card, with_checks=True), customer=customer_id, metadata={},
                type="card")
    if pm_id:
        obj["id"] = pm_id
    return obj


def card_details(card: TestCard, with_checks: bool = False) -> dict:
    details = {
        "brand": card.brand, "country": card.country, "display_brand": card.brand,
        "exp_month": EXP_MONTH, "exp_year": EXP_YEAR,
        "fingerprint": f"fp{card.last4}{card.brand[:4]}".ljust(16, "X"), "funding": card.funding,
        "last4": card.last4, "networks": {"available": [card.brand], "preferred": None},
        "regulated_status": "unregulated",
    }
    if with_checks:
        details.update(checks={"address_line1_check": None, "address_postal_code_check": None,
                               "cvc_check": "pass"},
                       generated_from=None, three_d_secure_usage={"supported": True}, wallet=None)
    return details


def payment_intent(params: dict, amount: int) -> dict:
    obj = _base(
        "pi", "payment_intent", amount=amount, amount_capturable=0,
        amount_details={"tip": {}}, amount_received=0, application=None,
        application_fee_amount=None, automatic_payment_methods=None, canceled_at=None,
        cancellation_reason=None, capture_method=params.get("capture_method") or "automatic_async",
        client_secret=None, confirmation_method=params.get("confirmation_method") or "automatic",
        currency=params["currency"].lower(), customer=params.get("customer"),
        description=params.get("description"), last_payment_error=None, latest_charge=None,
        metadata=dict(params.get("metadata") or {}), next_action=None, on_behalf_of=None,
        payment_method=params.get("payment_method"),
        payment_method_configuration_details=None,
        payment_method_options={"card": {"installments": None, "mandate_options": None,
                                         "network": None, "request_three_d_secure": "automatic"}},
        payment_method_types=list(params.get("payment_method_types") or ["card"]),
        processing=None, receipt_email=params.get("receipt_email"), review=None,
        setup_future_usage=params.get("setup_future_usage"), shipping=None, source=None,
        statement_descriptor=params.get("statement_descriptor"),
        statement_descriptor_suffix=params.get("statement_descriptor_suffix"),
        status="requires_payment_method", transfer_data=None, transfer_group=None)
    obj["client_secret"] = f"{obj['id']}_secret_{new_id('s')[2:]}"
    return obj


def charge(pi: dict, pm: dict, card: TestCard, failure: tuple[str, str] | None) -> dict:
    """A charge of `pi` on `pm`; `failure` is (failure code, message) for a declined one."""
    ok = failure is None
    if ok:
        outcome = {"network_status": "approved_by_network", "reason": None, "risk_level": "normal",
                   "risk_score": 20, "seller_message": "Payment complete.", "type": "authorized"}
    elif card.decline_code == "fraudulent":
        outcome = {"network_status": "not_sent_to_network", "reason": "merchant_blacklist",
                   "risk_level": "highest", "risk_score": 95,
                   "seller_message": "Stripe blocked this payment.", "type": "blocked"}
    else:
        outcome = {"network_status": "declined_by_network",
                   "reason": card.decline_code or failure[0], "risk_level": "normal",
                   "risk_score": 20, "type": "issuer_declined",
                   "seller_message": "The bank did not return any further details with this decline."}
    details = card_details(card)
    details.update(amount_authorized=pi["amount"] if ok else None, authorization_code=None,
                   checks={"address_line1_check": None, "address_postal_code_check": None,
                           "cvc_check": "pass"},
                   network="visa" if card.brand == "visa" else card.brand,
                   three_d_secure=None, wallet=None)
    return _base(
        "ch", "charge", amount=pi["amount"], amount_captured=pi["amount"] if ok else 0,
        amount_refunded=0, application=None, application_fee=None, application_fee_amount=None,
        balance_transaction=new_id("txn") if ok else None,
        billing_details=pm["billing_details"], calculated_statement_descriptor="AEROLITH",
        captured=ok, currency=pi["currency"], customer=pi["customer"],
        description=pi["description"], disputed=False, failure_balance_transaction=None,
        failure_code=None if ok else failure[0], failure_message=None if ok else failure[1],
        fraud_details={}, metadata=dict(pi["metadata"]), on_behalf_of=None, outcome=outcome,
        paid=ok, payment_intent=pi["id"], payment_method=pm["id"],
        payment_method_details={"card": details, "type": "card"}, receipt_email=None,
        receipt_number=None, receipt_url=None, refunded=False, review=None, shipping=None,
        source=None, statement_descriptor=None, statement_descriptor_suffix=None,
        status="succeeded" if ok else "failed", transfer_data=None, transfer_group=None)


def setup_intent(params: dict) -> dict:
    obj = _base(
        "seti", "setup_intent", application=None, automatic_payment_methods=None,
        cancellation_reason=None, client_secret=None, customer=params.get("customer"),
        description=params.get("description"), flow_directions=None, last_setup_error=None,
        latest_attempt=None, mandate=None, metadata=dict(params.get("metadata") or {}),
        next_action=None, on_behalf_of=None, payment_method=params.get("payment_method"),
        payment_method_configuration_details=None,
        payment_method_options={"card": {"mandate_options": None, "network": None,
                                         "request_three_d_secure": "automatic"}},
        payment_method_types=list(params.get("payment_method_types") or ["card"]),
        single_use_mandate=None,
        status="requires_confirmation" if params.get("payment_method") else "requires_payment_method",
        usage=params.get("usage") or "off_session")
    obj["client_secret"] = f"{obj['id']}_secret_{new_id('s')[2:]}"
    return obj


def checkout_session(params: dict, setup_intent_id: str) -> dict:
    obj = _base(
        "cs_test", "checkout.session", adaptive_pricing=None, after_expiration=None,
        allow_promotion_codes=None, amount_subtotal=None, amount_total=None,
        billing_address_collection=None, cancel_url=params.get("cancel_url"),
        client_reference_id=params.get("client_reference_id"), client_secret=None,
        consent=None, consent_collection=None, currency=params.get("currency"),
        custom_fields=[], custom_text={}, customer=params.get("customer"),
        customer_creation=None, customer_details=None, customer_email=params.get("customer_email"),
        expires_at=now() + 24 * 3600, invoice=None, locale=params.get("locale"),
        metadata=dict(params.get("metadata") or {}), mode="setup", payment_intent=None,
        payment_link=None, payment_method_types=list(params.get("payment_method_types") or ["card"]),
        payment_status="no_payment_required", setup_intent=setup_intent_id, status="open",
        submit_type=None, subscription=None, success_url=params.get("success_url"),
        ui_mode="hosted", url=None)
    obj["id"] = new_id("cs_test", 58)
    return obj


def refund(charge_obj: dict, amount: int, params: dict) -> dict:
    return _base(
        "re", "refund", amount=amount, balance_transaction=new_id("txn"), charge=charge_obj["id"],
        currency=charge_obj["currency"],
        destination_details={"card": {"reference_status": "pending",
                                      "reference_type": "acquirer_reference_number", "type": "refund"},
                             "type": "card"},
        metadata=dict(params.get("metadata") or {}), payment_intent=charge_obj["payment_intent"],
        reason=params.get("reason"), receipt_number=None, source_transfer_reversal=None,
        status="succeeded", transfer_reversal=None)


def dispute(charge_obj: dict, card: TestCard) -> dict:
    created = now()
    evidence_fields = (
        "access_activity_log", "billing_address", "cancellation_policy",
        "cancellation_policy_disclosure", "cancellation_rebuttal", "customer_communication",
        "customer_email_address", "customer_name", "customer_purchase_ip", "customer_signature",
        "duplicate_charge_documentation", "duplicate_charge_explanation", "duplicate_charge_id",
        "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
        "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address",
        "shipping_carrier", "shipping_date", "shipping_documentation", "shipping_tracking_number",
        "uncategorized_file", "uncategorized_text")
    return _base(
        "dp", "dispute", amount=charge_obj["amount"], balance_transactions=[],
        charge=charge_obj["id"], currency=charge_obj["currency"], enhanced_eligibility_types=[],
        evidence=dict.fromkeys(evidence_fields),
        evidence_details={"due_by": created + 7 * 24 * 3600, "enhanced_eligibility": {},
                          "has_evidence": False, "past_due": False, "submission_count": 0},
        is_charge_refundable=False, metadata={}, network_reason_code="10.4",
        payment_intent=charge_obj["payment_intent"],
        payment_method_details={"card": {"brand": card.brand, "case_type": "chargeback",
                                         "network_reason_code": "10.4"}, "type": "card"},
        reason="fraudulent", status="needs_response")
