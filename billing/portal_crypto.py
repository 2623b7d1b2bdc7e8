"""Portal pages for paying an invoice with SOL, USDC, TRX or USDT (SPEC §11): the invoice
page's "Pay with …" buttons ask for a quote, whose page shows a QR code (segno, inline
SVG: the Solana Pay request, or the Tron deposit address), the exact amount, the link
(Solana), a countdown to expiry and a status that
refreshes itself (htmx polls the status partial every 3 s; a meta refresh without
JavaScript). Thin: parse, call one service, render."""
from urllib.parse import urlencode

import segno
from django.conf import settings
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from aerolith import clock
from aerolith.errors import DomainError
from tenants.permissions import Action
from tenants.portal.access import member_required

from .portal import _invoice, _invoice_page, action_form, apply_errors
from .services.crypto import CRYPTO_METHODS, quote_create, quote_for

POLL_SECONDS = 3


def _quote(request, quote_id: int):
    try:
        return quote_for(request.tenant, quote_id)
    except DomainError as error:
        raise Http404(error.detail) from error


def qr_svg(text: str, title: str = "Solana Pay QR code") -> str:
    """The QR code of `text` as an inline SVG element (no XML declaration)."""
    return segno.make(text, error="m").svg_inline(scale=5, border=2, dark="#111", light="#fff",
                                                   title=title)


@require_POST
@member_required(Action.MANAGE_BILLING)
def invoice_pay_crypto(request, number):
    invoice = _invoice(request, number)
    form = action_form(request.POST)
    currency = request.POST.get("currency", "")
    if currency not in CRYPTO_METHODS:
        form.add_error(None, "Choose SOL, USDC, TRX or USDT to pay with crypto.")
        return _invoice_page(request, invoice, status=400, pay_form=form)
    try:
        quote = quote_create(tenant=request.tenant, invoice=invoice, currency=currency,
                             actor=request.principal)
    except DomainError as error:
        apply_errors(form, error)
        return _invoice_page(request, invoice, status=400 if error.status < 500 else 503, pay_form=form)
    return redirect("portal:crypto-quote", quote_id=quote.pk)


def _context(request, quote) -> dict:
    now = clock.now(request.tenant)
    seconds = max(0, int((quote.expires_at - now).total_seconds()))
    return {"quote": quote, "invoice": quote.invoice, "now": now, "seconds_left": seconds,
            "countdown": f"{seconds // 60}:{seconds % 60:02d}", "poll_seconds": POLL_SECONDS}


def test_wallet_url(quote) -> str:
    """In test mode, the local chain fake's /wallet page prefilled to pay `quote`
    (tests/fakes/solana_rpc.py, trongrid.py); "" outside test mode."""
    if not settings.AEROLITH_TEST_MODE:
        return ""
    if quote.network == "tron":
        base = settings.AEROLITH_TRONGRID_URL
        query = {"address": quote.address, "amount": quote.amount_text, "currency": quote.currency}
    else:
        base, query = settings.AEROLITH_SOLANA_RPC_URL, {"url": quote.url}
    return f"{base.rstrip('/')}/wallet?{urlencode(query)}"


@require_GET
@member_required()
def crypto_quote_page(request, quote_id):
    quote = _quote(request, quote_id)
    context = _context(request, quote)
    context["test_wallet_url"] = test_wallet_url(quote) if quote.is_open else ""
    if quote.network == "tron":  # wallets scan the plain address; the amount is shown beside it
        context["qr"] = qr_svg(quote.address, title="Tron deposit address QR code")
    else:
        context["qr"] = qr_svg(quote.url)
    return render(request, "portal/crypto_quote.html", context)


@require_GET
@member_required()
def crypto_quote_status(request, quote_id):
    return render(request, "portal/crypto_quote_status.html", _context(request, _quote(request, quote_id)))


urlpatterns = [
    path("invoices/<str:number>/pay/crypto", invoice_pay_crypto, name="invoice-pay-crypto"),
    path("billing/crypto/<int:quote_id>", crypto_quote_page, name="crypto-quote"),
    path("billing/crypto/<int:quote_id>/status", crypto_quote_status, name="crypto-quote-status"),
]
