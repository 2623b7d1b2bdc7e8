"""Money movement: payment intents and their charges, setup intents, Checkout setup sessions,
refunds and disputes. Mixed into `api.Store`, whose plumbing (get, _add, emit) it uses."""
import copy

from . import objects as obj
from .cards import AUTH_REQUIRED_MESSAGE, CARDS
from .errors import DOCS, StripeError, card_error, invalid
from .params import allow, boolean, integer, merge_metadata, require

_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
_MIN_AMOUNT = 50  # cents; Stripe's minimum charge in USD/EUR


class Payments:
    # --- payment intents ----------------------------------------------------------------------
    _PI_PARAMS = ("amount", "currency", "customer", "payment_method", "off_session", "confirm",
                  "metadata", "description", "payment_method_types", "return_url", "receipt_email",
                  "setup_future_usage", "statement_descriptor", "statement_descriptor_suffix",
                  "capture_method", "confirmation_method", "automatic_payment_methods",
                  "error_on_requires_action", "payment_method_options", "use_stripe_sdk")

    def payment_intent_create(self, params: dict) -> dict:
        allow(params, *self._PI_PARAMS)
        require(params, "amount", "currency")
        amount = integer(params, "amount")
        if amount < _MIN_AMOUNT:
            raise invalid("Amount must be at least $0.50 usd", "amount", "amount_too_small")
        if params.get("customer"):
            self.get(params["customer"], "customer", "customer")
        if params.get("payment_method"):
            self.payment_method(params["payment_method"])
        confirm = boolean(params, "confirm")
        off_session = self._off_session(params)
        if off_session and not confirm:
            raise invalid("You can only pass in `off_session` when `confirm` is set to true.",
                          "off_session")
        pi = self._add(obj.payment_intent(params, amount))
        if pi["payment_method"]:
            pi["status"] = "requires_confirmation"
        if confirm:
            self._confirm(pi, off_session=off_session, return_url=params.get("return_url"))
        return pi

    def _off_session(self, params: dict) -> bool:
        value = params.get("off_session")
        if value in ("one_off", "recurring"):
            return True
        return boolean(params, "off_session")

    def payment_intent_update(self, params: dict, pi_id: str) -> dict:
        allow(params, "amount", "currency", "customer", "payment_method", "metadata", "description",
              "receipt_email", "setup_future_usage", "statement_descriptor", "statement_descriptor_suffix")
        pi = self.get(pi_id, "payment_intent")
        if pi["status"] not in _CONFIRMABLE:
            raise self._unexpected_state(pi, "update", "updated")
        for name in ("description", "receipt_email", "customer", "setup_future_usage"):
            if name in params:
                pi[name] = params[name] or None
        if params.get("payment_method"):
            pi["payment_method"] = self.payment_method(params["payment_method"])["id"]
            pi["status"] = "requires_confirmation"
        if "amount" in params:
            pi["amount"] = integer(params, "amount")
        merge_metadata(pi, params)
        return pi

    def payment_intent_confirm(self, params: dict, pi_id: str) -> dict:
        allow(params, "payment_method", "return_url", "off_session", "receipt_email", "setup_future_usage",
              "payment_method_options", "use_stripe_sdk", "error_on_requires_action", "mandate_data")
        pi = self.get(pi_id, "payment_intent")
        if pi["status"] not in _CONFIRMABLE:
            raise self._unexpected_state(pi, "confirm", "confirmed")
        if params.get("payment_method"):
            pi["payment_method"] = self.payment_method(params["payment_method"])["id"]
        self._confirm(pi, off_session=self._off_session(params), return_url=params.get("return_url"))
        return pi

    def payment_intent_cancel(self, params: dict, pi_id: str) -> dict:
        allow(params, "cancellation_reason")
        pi = self.get(pi_id, "payment_intent")
        if pi["status"] == "succeeded" or pi["status"] == "canceled":
            raise self._unexpected_state(pi, "cancel", "canceled")
        pi.update(status="canceled", canceled_at=obj.now(), next_action=None,
                  cancellation_reason=params.get("cancellation_reason"))
        self.emit("payment_intent.canceled", pi)
        return pi

    def _unexpected_state(self, pi: dict, action: str, done: str) -> StripeError:
        return invalid(
            f"You cannot {action} this PaymentIntent because it has a status of {pi['status']}. Only a "
            f"PaymentIntent with one of the following statuses may be {done}: {', '.join(_CONFIRMABLE)}.",
            code="payment_intent_unexpected_state", payment_intent=copy.deepcopy(pi))

    def _confirm(self, pi: dict, *, off_session: bool, return_url: str | None) -> None:
        if not pi["payment_method"]:
            raise invalid("You cannot confirm this PaymentIntent because it's missing a payment method. "
                          "You can update the PaymentIntent with a payment method and then confirm it "
                          "again.",
                          "payment_method", "payment_intent_unexpected_state")
        pm = self.payment_method(pi["payment_method"])
        if pi["customer"] and pm["customer"] not in (None, pi["customer"]):
            raise invalid("The provided PaymentMethod belongs to a different Customer than the one on "
                          "this PaymentIntent.", "payment_method", "payment_method_unexpected_state")
        card = self.card_of[pm["id"]]
        pi.update(last_payment_error=None, next_action=None)
        if card.requires_auth and pi["id"] not in self.authenticated:
            if off_session:
                self._fail(pi, pm, "authentication_required", "authentication_required",
                           AUTH_REQUIRED_MESSAGE)
            url = f"{self.base_url}/3ds/{pi['id']}"
            if return_url:
                pi["next_action"] = {"type": "redirect_to_url",
                                     "redirect_to_url": {"return_url": return_url, "url": url}}
            else:
                pi["next_action"] = {"type": "use_stripe_sdk",
                                     "use_stripe_sdk": {"type": "three_d_secure_redirect",
                                                        "stripe_js": url, "source": pm["id"]}}
            pi["status"] = "requires_action"
            self.return_urls[pi["id"]] = return_url
            return
        if card.decline_code:
            self._fail(pi, pm, card.error_code, card.decline_code, card.message)
        self._succeed(pi, pm)

    def _succeed(self, pi: dict, pm: dict) -> None:
        card = self.card_of[pm["id"]]
        charge = self._add(obj.charge(pi, pm, card, None))
        pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=charge["id"],
                  payment_method=pm["id"], next_action=None, last_payment_error=None)
        self.emit("payment_intent.succeeded", pi)
        if card.dispute:
            dispute = self._add(obj.dispute(charge, card))
            charge["disputed"] = True
            self.emit("charge.dispute.created", dispute)

    def _fail(self, pi: dict, pm: dict, code: str, decline_code: str | None, message: str,
              raise_error: bool = True) -> None:
        """Record a failed attempt: a failed charge, the PI back to requires_payment_method, the
        event; then raise the 402 card error (with the PI inside) the API answers."""
        card = self.card_of[pm["id"]]
        charge = self._add(obj.charge(pi, pm, card, (code, message)))
        error = {"advice_code": card.advice_code if decline_code == card.decline_code else None,
                 "charge": charge["id"], "code": code, "decline_code": decline_code,
                 "doc_url": DOCS + code.replace("_", "-"),
                 "message": message, "payment_method": copy.deepcopy(pm), "type": "card_error"}
        error = {key: value for key, value in error.items() if value is not None}
        pi.update(status="requires_payment_method", last_payment_error=error, payment_method=None,
                  latest_charge=charge["id"], next_action=None)
        self.emit("payment_intent.payment_failed", pi)
        if raise_error:
            raise card_error(message, code, decline_code, advice_code=error.get("advice_code"),
                             charge=charge["id"],
                             payment_intent=copy.deepcopy(pi), payment_method=copy.deepcopy(pm))

    def three_d_secure(self, pi_id: str, outcome: str) -> str:
        """The customer completes (`outcome="complete"`) or fails 3-D Secure on the page; returns
        where the page sends the browser (the confirm's return_url with Stripe's parameters)."""
        pi = self.get(pi_id, "payment_intent")
        if pi["status"] != "requires_action":
            raise invalid(f"This PaymentIntent has a status of {pi['status']}; there is nothing to "
                          "authenticate.", code="payment_intent_unexpected_state")
        pm = self.payment_method(pi["payment_method"])
        if outcome == "complete":
            self.authenticated.add(pi_id)
            card = self.card_of[pm["id"]]
            if card.decline_code:
                self._fail(pi, pm, card.error_code, card.decline_code, card.message, raise_error=False)
            else:
                self._succeed(pi, pm)
        else:
            pi.update(status="requires_payment_method", payment_method=None, next_action=None,
                      last_payment_error={
                          "code": "payment_intent_authentication_failure",
                          "doc_url": DOCS + "payment-intent-authentication-failure",
                          "message": "The provided PaymentMethod has failed authentication. You can provide "
                                     "payment_method_data or a new PaymentMethod to attempt to fulfill this "
                                     "PaymentIntent again.",
                          "payment_method": copy.deepcopy(pm), "type": "invalid_request_error"})
            self.emit("payment_intent.payment_failed", pi)
        return_url = self.return_urls.get(pi_id) or ""
        if not return_url:
            return ""
        status = "succeeded" if pi["status"] == "succeeded" else "failed"
        separator = "&" if "?" in return_url else "?"
        return (f"{return_url}{separator}payment_intent={pi_id}&payment_intent_client_secret="
                f"{pi['client_secret']}&redirect_status={status}")

    # --- setup intents and Checkout in setup mode ---------------------------------------------
    def setup_intent_create(self, params: dict) -> dict:
        allow(params, "customer", "payment_method", "confirm", "usage", "metadata", "description",
              "payment_method_types", "return_url", "automatic_payment_methods",
              "payment_method_options", "single_use", "mandate_data", "on_behalf_of", "use_stripe_sdk")
        if params.get("customer"):
            self.get(params["customer"], "customer", "customer")
        if params.get("payment_method"):
            self.payment_method(params["payment_method"])
        seti = self._add(obj.setup_intent(params))
        if boolean(params, "confirm"):
            self._setup_confirm(seti)
        return seti

    def setup_intent_confirm(self, params: dict, seti_id: str) -> dict:
        allow(params, "payment_method", "return_url", "mandate_data", "payment_method_options",
              "use_stripe_sdk")
        seti = self.get(seti_id, "setup_intent")
        if seti["status"] not in _CONFIRMABLE:
            raise invalid(f"You cannot confirm this SetupIntent because it has a status of "
                          f"{seti['status']}.", code="setup_intent_unexpected_state",
                          setup_intent=copy.deepcopy(seti))
        if params.get("payment_method"):
            seti["payment_method"] = self.payment_method(params["payment_method"])["id"]
        self._setup_confirm(seti)
        return seti

    def _setup_confirm(self, seti: dict) -> None:
        """Succeed, attaching the payment method (a clone, for a test id) to the customer."""
        if not seti["payment_method"]:
            raise invalid("You cannot confirm this SetupIntent because it's missing a payment method.",
                          "payment_method", "setup_intent_unexpected_state")
        if seti["customer"]:
            pm = self._attach(seti["payment_method"], seti["customer"])
        else:
            pm = self.payment_method(seti["payment_method"])
        seti.update(status="succeeded", payment_method=pm["id"], latest_attempt=obj.new_id("setatt"),
                    next_action=None, last_setup_error=None)
        self.emit("setup_intent.succeeded", seti)

    def checkout_session_create(self, params: dict) -> dict:
        allow(params, "mode", "customer", "success_url", "cancel_url", "currency", "metadata",
              "payment_method_types", "client_reference_id", "setup_intent_data", "customer_email",
              "ui_mode", "expires_at", "locale", "billing_address_collection")
        require(params, "mode")
        if params["mode"] != "setup":
            raise invalid("This fake supports Checkout in setup mode only.", "mode")
        require(params, "success_url")
        if not params.get("currency") and not params.get("payment_method_types"):
            # https://docs.stripe.com/payments/save-and-reuse?platform=checkout: dynamic payment methods
            raise invalid("You must provide `currency` when creating a Checkout Session in setup mode "
                          "without `payment_method_types`.", "currency", "parameter_missing")
        if params.get("customer"):
            self.get(params["customer"], "customer", "customer")
        data = params.get("setup_intent_data") or {}
        seti = self._add(obj.setup_intent({"customer": params.get("customer"),
                                           "metadata": data.get("metadata"),
                                           "description": data.get("description")}))
        session = self._add(obj.checkout_session(params, seti["id"]))
        session["url"] = f"{self.base_url}/checkout/{session['id']}"
        return session

    def checkout_session_expire(self, params: dict, session_id: str) -> dict:
        allow(params)
        session = self.get(session_id, "checkout.session")
        if session["status"] != "open":
            raise invalid(f"Only Checkout Sessions with a status in [\"open\"] can be expired. This "
                          f"Checkout Session has a status of \"{session['status']}\".",
                          code="checkout_session_unexpected_state")
        session.update(status="expired", url=None)
        self.emit("checkout.session.expired", session)
        return session

    def checkout_complete(self, session_id: str, card_id: str) -> str:
        """The customer submits `card_id` on the Checkout page; returns the success redirect."""
        session = self.get(session_id, "checkout.session")
        if session["status"] != "open":
            raise invalid(f"This Checkout Session is {session['status']}.",
                          code="checkout_session_unexpected_state")
        if card_id not in CARDS:
            raise invalid(f"No such test card: {card_id}", "payment_method")
        seti = self.get(session["setup_intent"], "setup_intent")
        seti["payment_method"] = card_id
        self._setup_confirm(seti)
        customer = self.objects.get(session["customer"] or "") or {}
        session.update(status="complete", url=None, customer_details={
            "address": None, "email": customer.get("email") or session["customer_email"],
            "name": customer.get("name"), "phone": None, "tax_exempt": "none", "tax_ids": []})
        self.emit("checkout.session.completed", session)
        return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)

    # --- refunds and disputes -----------------------------------------------------------------
    def refund_create(self, params: dict) -> dict:
        allow(params, "payment_intent", "charge", "amount", "reason", "metadata",
              "instructions_email", "refund_application_fee", "reverse_transfer", "origin")
        if params.get("charge"):
            charge = self.get(params["charge"], "charge", "charge")
        elif params.get("payment_intent"):
            pi = self.get(params["payment_intent"], "payment_intent", "payment_intent")
            if pi["status"] != "succeeded":
                raise invalid(f"This PaymentIntent ({pi['id']}) does not have a successful charge to "
                              "refund.", "payment_intent")
            charge = self.get(pi["latest_charge"], "charge")
        else:
            raise invalid("One of the following params should be provided for this request: "
                          "payment_intent or charge.", code="parameter_missing")
        if params.get("reason") not in (None, "", "duplicate", "fraudulent", "requested_by_customer"):
            raise invalid("Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                          "reason")
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if charge["status"] != "succeeded":
            raise invalid(f"Charge {charge['id']} has not succeeded; there is nothing to refund.", "charge")
        if remaining <= 0:
            raise invalid(f"Charge {charge['id']} has already been refunded.",
                          code="charge_already_refunded", charge=charge["id"])
        amount = integer(params, "amount")
        if amount is None:
            amount = remaining
        if amount <= 0:
            raise invalid("Invalid positive integer", "amount", "parameter_invalid_integer")
        if amount > remaining:
            raise invalid(f"Refund amount ({self._dollars(amount, charge)}) is greater than unrefunded "
                          f"amount on charge ({self._dollars(remaining, charge)})", "amount",
                          "amount_too_large")
        refund = self._add(obj.refund(charge, amount, params))
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        self.emit("charge.refunded", charge, previous)
        return refund

    @staticmethod
    def _dollars(cents: int, charge: dict) -> str:
        return f"${cents // 100}.{cents % 100:02d}" if charge["currency"] == "usd" else \
            f"{cents / 100:.2f} {charge['currency']}"

    def refund_list(self, params: dict) -> dict:
        found = [r for r in self._of_kind("refund")
                 if (not params.get("charge") or r["charge"] == params["charge"])
                 and (not params.get("payment_intent") or r["payment_intent"] == params["payment_intent"])]
        return self._list(found, "/v1/refunds", params)

    def dispute_list(self, params: dict) -> dict:
        found = [d for d in self._of_kind("dispute")
                 if (not params.get("charge") or d["charge"] == params["charge"])
                 and (not params.get("payment_intent") or d["payment_intent"] == params["payment_intent"])]
        return self._list(found, "/v1/disputes", params)

    def dispute_close(self, dispute_id: str, status: str) -> dict:
        """Test-only: the card network decides a dispute (`won` or `lost`)."""
        dispute = self.get(dispute_id, "dispute")
        if status not in ("won", "lost"):
            raise invalid("status must be won or lost", "status")
        if dispute["status"] in ("won", "lost"):
            raise invalid(f"Dispute {dispute_id} is already closed ({dispute['status']}).", "status")
        previous = {"status": dispute["status"]}
        dispute["status"] = status
        self.emit("charge.dispute.closed", dispute, previous)
        return dispute

    def event_list(self, params: dict) -> dict:
        found = [e for e in self._of_kind("event") if not params.get("type") or e["type"] == params["type"]]
        return self._list(found, "/v1/events", params)
