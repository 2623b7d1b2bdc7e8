"""The fake's state and its /v1 endpoints: what each Stripe call does to the objects.

`Store.call(method, path, params)` runs one API request and returns the response object (or
raises StripeError); events it causes are queued on `store.new_events` for the caller to send.
Callers hold `store.lock` (the HTTP server does, per request), so the state is simple dicts.
"""
import copy
import re
import threading

from . import objects as obj
from .cards import CARDS, TestCard
from .errors import StripeError, invalid, missing
from .params import allow, integer, merge_metadata, require
from .payments import Payments

API_VERSION = "2025-09-30.clover"
_KINDS = {"cus": "customer", "pm": "payment_method", "pi": "payment_intent", "ch": "charge",
          "seti": "setup_intent", "cs": "checkout.session", "re": "refund", "dp": "dispute",
          "evt": "event"}


def _kind_of(object_id: str) -> str:
    return _KINDS.get(object_id.split("_", 1)[0], "object")


class Store(Payments):
    def __init__(self, base_url: str = ""):
        self.base_url = base_url
        self.lock = threading.RLock()
        self.objects: dict[str, dict] = {}
        self.card_of: dict[str, TestCard] = {}  # payment method id -> the test card behind it
        self.new_events: list[dict] = []
        self.authenticated: set[str] = set()  # payment intents that passed 3-D Secure
        self.return_urls: dict[str, str | None] = {}
        self._last_event_created = 0
        self._routes = [(method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in (
            ("POST", r"/v1/customers", self.customer_create),
            ("GET", r"/v1/customers", self.customer_list),
            ("GET", r"/v1/customers/(cus_\w+)", self.customer_retrieve),
            ("POST", r"/v1/customers/(cus_\w+)", self.customer_update),
            ("DELETE", r"/v1/customers/(cus_\w+)", self.customer_delete),
            ("GET", r"/v1/customers/(cus_\w+)/payment_methods", self.customer_payment_methods),
            ("GET", r"/v1/payment_methods", self.payment_method_list),
            ("GET", r"/v1/payment_methods/(pm_\w+)", self.payment_method_retrieve),
            ("POST", r"/v1/payment_methods/(pm_\w+)/attach", self.payment_method_attach),
            ("POST", r"/v1/payment_methods/(pm_\w+)/detach", self.payment_method_detach),
            ("POST", r"/v1/payment_intents", self.payment_intent_create),
            ("GET", r"/v1/payment_intents/(pi_\w+)", self.retrieve),
            ("POST", r"/v1/payment_intents/(pi_\w+)", self.payment_intent_update),
            ("POST", r"/v1/payment_intents/(pi_\w+)/confirm", self.payment_intent_confirm),
            ("POST", r"/v1/payment_intents/(pi_\w+)/cancel", self.payment_intent_cancel),
            ("GET", r"/v1/charges/(ch_\w+)", self.retrieve),
            ("POST", r"/v1/setup_intents", self.setup_intent_create),
            ("GET", r"/v1/setup_intents/(seti_\w+)", self.retrieve),
            ("POST", r"/v1/setup_intents/(seti_\w+)/confirm", self.setup_intent_confirm),
            ("POST", r"/v1/checkout/sessions", self.checkout_session_create),
            ("GET", r"/v1/checkout/sessions/(cs_\w+)", self.retrieve),
            ("POST", r"/v1/checkout/sessions/(cs_\w+)/expire", self.checkout_session_expire),
            ("POST", r"/v1/refunds", self.refund_create),
            ("GET", r"/v1/refunds", self.refund_list),
            ("GET", r"/v1/refunds/(re_\w+)", self.retrieve),
            ("GET", r"/v1/disputes", self.dispute_list),
            ("GET", r"/v1/disputes/(dp_\w+)", self.retrieve),
            ("GET", r"/v1/events", self.event_list),
            ("GET", r"/v1/events/(evt_\w+)", self.retrieve),
        )]

    # --- plumbing -----------------------------------------------------------------------------
    def call(self, method: str, path: str, params: dict) -> dict:
        allowed = []
        for route_method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match:
                allowed.append(route_method)
                if route_method == method:
                    result = handler(params, *match.groups())
                    return self._expand(copy.deepcopy(result), params.get("expand") or [])
        if allowed:
            raise invalid(f"Unrecognized request URL ({method}: {path}).")
        raise StripeError(404, "invalid_request_error",
                          f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                          "or we can help at https://support.stripe.com/.")

    def get(self, object_id: str, kind: str | None = None, param: str = "id") -> dict:
        found = self.objects.get(object_id)
        if found is None or (kind and found["object"] != kind):
            raise missing(kind or _kind_of(object_id), object_id, param)
        return found

    def retrieve(self, params: dict, object_id: str) -> dict:
        return self.get(object_id, _kind_of(object_id))

    def _add(self, thing: dict) -> dict:
        self.objects[thing["id"]] = thing
        return thing

    def _expand(self, result: dict, paths: list[str]) -> dict:
        """Stripe's `expand[]`: replace ids along each dotted path with the objects they name."""
        for path in paths:
            node = result
            for part in path.split("."):
                if not isinstance(node, dict):
                    break
                value = node.get(part)
                if isinstance(value, str) and value in self.objects:
                    value = node[part] = copy.deepcopy(self.objects[value])
                node = value
        return result

    def _list(self, items: list[dict], url: str, params: dict) -> dict:
        items = sorted(items, key=lambda item: item["created"], reverse=True)
        limit = integer(params, "limit") or 10
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}

    def _of_kind(self, kind: str) -> list[dict]:
        return [thing for thing in self.objects.values() if thing["object"] == kind]

    def emit(self, event_type: str, thing: dict, previous: dict | None = None) -> dict:
        created = max(obj.now(), self._last_event_created + 1)  # strictly increasing
        self._last_event_created = created
        event = {"id": obj.new_id("evt"), "object": "event", "api_version": API_VERSION,
                 "created": created, "data": {"object": copy.deepcopy(thing)}, "livemode": False,
                 "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
                 "type": event_type}
        if previous:
            event["data"]["previous_attributes"] = previous
        self._add(event)
        self.new_events.append(event)
        return event

    def take_events(self) -> list[dict]:
        events, self.new_events = self.new_events, []
        return events

    # --- customers ----------------------------------------------------------------------------
    _CUSTOMER_PARAMS = ("address", "description", "email", "invoice_settings", "metadata", "name",
                        "phone", "preferred_locales", "payment_method", "shipping", "tax_exempt")

    def customer_create(self, params: dict) -> dict:
        allow(params, *self._CUSTOMER_PARAMS)
        customer = self._add(obj.customer(params))
        if params.get("payment_method"):
            self._attach(params["payment_method"], customer["id"])
        return customer

    def customer_update(self, params: dict, customer_id: str) -> dict:
        allow(params, *self._CUSTOMER_PARAMS)
        customer = self.get(customer_id, "customer")
        for name in ("address", "description", "email", "name", "phone"):
            if name in params:
                customer[name] = params[name] or None
        default = (params.get("invoice_settings") or {}).get("default_payment_method")
        if default is not None:
            if default:
                self._attached_to(default, customer_id, "invoice_settings[default_payment_method]")
            customer["invoice_settings"]["default_payment_method"] = default or None
        merge_metadata(customer, params)
        return customer

    def customer_retrieve(self, params: dict, customer_id: str) -> dict:
        found = self.objects.get(customer_id)
        if found and found.get("deleted"):
            return found
        return self.get(customer_id, "customer")

    def customer_delete(self, params: dict, customer_id: str) -> dict:
        self.get(customer_id, "customer")
        for pm in self._of_kind("payment_method"):
            if pm["customer"] == customer_id:
                pm["customer"] = None
        self.objects[customer_id] = {"id": customer_id, "object": "customer", "deleted": True}
        return self.objects[customer_id]

    def customer_list(self, params: dict) -> dict:
        found = [c for c in self._of_kind("customer") if not c.get("deleted")
                 and (not params.get("email") or c["email"] == params["email"])]
        return self._list(found, "/v1/customers", params)

    def customer_payment_methods(self, params: dict, customer_id: str) -> dict:
        self.get(customer_id, "customer")
        found = [pm for pm in self._of_kind("payment_method") if pm["customer"] == customer_id]
        return self._list(found, f"/v1/customers/{customer_id}/payment_methods", params)

    # --- payment methods ----------------------------------------------------------------------
    def payment_method(self, pm_id: str, param: str = "payment_method") -> dict:
        """The payment method `pm_id`; a test id (pm_card_visa) is known without being created."""
        if pm_id not in self.objects and pm_id in CARDS:
            self._add(obj.payment_method(CARDS[pm_id], pm_id))
            self.card_of[pm_id] = CARDS[pm_id]
        return self.get(pm_id, "payment_method", param)

    def payment_method_retrieve(self, params: dict, pm_id: str) -> dict:
        return self.payment_method(pm_id, "id")

    def payment_method_list(self, params: dict) -> dict:
        require(params, "customer")
        return self.customer_payment_methods(params, params["customer"])

    def payment_method_attach(self, params: dict, pm_id: str) -> dict:
        allow(params, "customer")
        require(params, "customer")
        return self._attach(pm_id, params["customer"], "id")

    def _attach(self, pm_id: str, customer_id: str, param: str = "payment_method") -> dict:
        """Attach; a test id is cloned into a new payment method first, as Stripe does."""
        pm = self.payment_method(pm_id, param)
        self.get(customer_id, "customer", "customer")
        if pm_id in CARDS:
            pm = self._add(obj.payment_method(CARDS[pm_id], customer_id=customer_id))
            self.card_of[pm["id"]] = CARDS[pm_id]
        elif pm["customer"] not in (None, customer_id):
            raise invalid("The payment method you provided has already been attached to a customer.",
                          "payment_method", "payment_method_unexpected_state")
        pm["customer"] = customer_id
        return pm

    def _attached_to(self, pm_id: str, customer_id: str, param: str) -> dict:
        pm = self.payment_method(pm_id, param)
        if pm["customer"] != customer_id:
            raise invalid(f"The customer does not have a payment method with the ID {pm_id}. The payment "
                          "method must be attached to the customer.", param, "resource_missing")
        return pm

    def payment_method_detach(self, params: dict, pm_id: str) -> dict:
        allow(params)
        pm = self.payment_method(pm_id, "id")
        if not pm["customer"]:
            raise invalid("The payment method you provided is not attached to a customer so detachment "
                          "is impossible.", code="payment_method_unexpected_state")
        for customer in self._of_kind("customer"):
            if customer["invoice_settings"]["default_payment_method"] == pm_id:
                customer["invoice_settings"]["default_payment_method"] = None
        pm["customer"] = None
        return pm
