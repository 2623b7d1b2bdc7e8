"""The hosted pages a browser visits: Checkout in setup mode (pick a test card) and the 3-D Secure
challenge (Complete / Fail). Plain HTML forms, so urllib or a test client can drive them."""
import html
import re
from urllib.parse import parse_qsl

from .cards import CARDS
from .errors import StripeError

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}"
          "button{display:block;width:100%;margin:.4rem 0;padding:.6rem;font-size:1rem;text-align:left}"
          ".muted{color:#666}")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def route(store, method: str, path: str, body: str) -> tuple[int, str, str | None] | None:
    """(status, html, redirect location) for a page request, or None if there is no such page."""
    form = dict(parse_qsl(body))
    if match := re.match(r"^/checkout/(cs_\w+)$", path):
        return _checkout(store, method, match.group(1), form)
    if match := re.match(r"^/3ds/(pi_\w+)$", path):
        return _three_d_secure(store, method, match.group(1), form)
    return None


def _error(status: int, message: str) -> tuple[int, str, None]:
    return status, _page("Something went wrong", f"<p>{html.escape(message)}</p>"), None


def _checkout(store, method: str, session_id: str, form: dict):
    session = store.objects.get(session_id)
    if not session or session["object"] != "checkout.session":
        return _error(404, "No such Checkout Session.")
    if method == "POST":
        if form.get("action") == "cancel":
            return 303, "", session["cancel_url"] or session["success_url"]
        try:
            return 303, "", store.checkout_complete(session_id, form.get("payment_method", ""))
        except StripeError as error:
            return _error(400, error.error["message"])
    if session["status"] != "open":
        return _error(410, f"This Checkout Session is {session['status']}.")
    buttons = "".join(
        f'<button type="submit" name="payment_method" value="{card.token}">'
        f'{card.brand.title()} •••• {card.last4} <span class="muted">({card.token})</span></button>'
        for card in CARDS.values())
    cancel = ('<form method="post"><button type="submit" name="action" value="cancel">Cancel and go back'
              '</button></form>') if session["cancel_url"] else ""
    body = (f'<p class="muted">Test mode — save a card for later payments. Session {session_id}</p>'
            f'<form method="post" id="cards">{buttons}</form>{cancel}')
    return 200, _page("Save a card", body), None


def _three_d_secure(store, method: str, pi_id: str, form: dict):
    pi = store.objects.get(pi_id)
    if not pi or pi["object"] != "payment_intent":
        return _error(404, "No such PaymentIntent.")
    if method == "POST":
        outcome = form.get("action")
        if outcome not in ("complete", "fail"):
            return _error(400, "Choose Complete or Fail.")
        try:
            location = store.three_d_secure(pi_id, outcome)
        except StripeError as error:
            return _error(400, error.error["message"])
        if location:
            return 303, "", location
        return 200, _page("Authentication finished", f"<p>Payment {html.escape(pi['status'])}.</p>"), None
    if pi["status"] != "requires_action":
        return _error(410, f"This payment is {pi['status']}; there is nothing to authenticate.")
    amount = f"{pi['amount'] / 100:.2f} {pi['currency'].upper()}"
    body = (f'<p>Test mode 3-D Secure for a payment of <strong>{amount}</strong> ({pi_id}).</p>'
            '<form method="post"><button type="submit" name="action" value="complete">'
            'Complete authentication</button>'
            '<button type="submit" name="action" value="fail">Fail authentication</button></form>')
    return 200, _page("Authenticate your payment", body), None
