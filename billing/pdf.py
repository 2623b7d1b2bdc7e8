"""An invoice as a PDF (SPEC §4: every invoice renders to PDF).

fpdf2 is pure Python, so a fresh machine needs no system libraries (WeasyPrint would need
Pango and Cairo). Its built-in Helvetica covers Windows-1252 only; every text goes through
`pdf_text`, which keeps what the font can show and replaces the rest, so a tenant called
"東京 Ltd" gets a readable invoice instead of an error.
"""
import unicodedata
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from fpdf import FPDF, FontFace, XPos, YPos

from aerolith.errors import Conflict
from aerolith.money import usd, usd_rate

from .models import Invoice, Payment

# The core fonts are declared with WinAnsiEncoding, which is cp1252: it has the dashes,
# quotes and the euro sign that latin-1 lacks, and agrees with latin-1 everywhere else.
ENCODING = "cp1252"
BRAND = (59, 91, 219)  # --brand in static/css/aerolith.css
INK = (20, 33, 61)
MUTED = (91, 100, 120)
LINE = (223, 227, 234)
STAMPS = {
    Invoice.Status.PAID: ("PAID", (43, 138, 62)),
    Invoice.Status.VOID: ("VOID", (91, 100, 120)),
    Invoice.Status.UNCOLLECTIBLE: ("UNCOLLECTIBLE", (201, 42, 42)),
}
_SPACES = str.maketrans({"\r": " ", "\n": " ", "\t": " "})


def pdf_text(value) -> str:
    """`value` as text Helvetica can show: characters outside cp1252 lose their accents
    when that is enough (NFKD: "ŝ" -> "s", "ﬁ" -> "fi") and become "?" otherwise."""
    text = unicodedata.normalize("NFC", str(value)).translate(_SPACES)
    out = []
    for char in text:
        if _encodable(char):
            out.append(char)
            continue
        plain = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        out.append(plain if plain and _encodable(plain) else "?")
    return "".join(out)


def _encodable(text: str) -> bool:
    try:
        text.encode(ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def _date(value: datetime | None) -> str:
    return value.strftime("%d %b %Y") if value else "-"


def _moment(value: datetime | None) -> str:
    return value.strftime("%d %b %Y %H:%M UTC") if value else "-"


def _quantity(value: Decimal) -> str:
    return f"{Decimal(value).normalize():,f}"


def _domain(tenant) -> str:
    domain = tenant.get_primary_domain()
    return domain.domain if domain else f"{tenant.slug}.{settings.AEROLITH_BASE_DOMAIN}"


class _InvoicePDF(FPDF):
    def __init__(self, invoice: Invoice):
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.invoice = invoice
        self.core_fonts_encoding = ENCODING
        self.set_margins(18, 18, 18)
        self.set_auto_page_break(auto=True, margin=20)

    def footer(self):
        self.set_y(-14)
        self.set_font("Helvetica", size=8)
        self.set_text_color(*MUTED)
        self.cell(0, 5, pdf_text(f"Aerolith Cloud · Invoice {self.invoice.number} · "
                                 f"page {self.page_no()} of {{nb}}"), align="C")


def invoice_pdf(invoice: Invoice, *, compress: bool = True) -> bytes:
    """The finalised `invoice` as PDF bytes. `compress=False` leaves the page streams as
    plain text (tests read them). Raises Conflict for a draft, which has no number yet and
    may still change."""
    if invoice.status == Invoice.Status.DRAFT or not invoice.number:
        raise Conflict("A draft invoice has no PDF; finalise it first.", code="invoice_draft")
    pdf = _InvoicePDF(invoice)
    pdf.set_compression(compress)
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.set_author("Aerolith Cloud")
    pdf.set_creation_date(invoice.finalized_at)  # the same invoice gives the same file
    pdf.add_page()
    _header(pdf, invoice)
    _parties(pdf, invoice)
    _lines(pdf, invoice)
    _totals(pdf, invoice)
    _payments(pdf, invoice)
    return bytes(pdf.output())


def _header(pdf: FPDF, invoice: Invoice) -> None:
    pdf.set_text_color(*BRAND)
    pdf.set_font("Helvetica", "B", 22)
    pdf.cell(100, 10, "Aerolith Cloud")
    pdf.set_text_color(*INK)
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "INVOICE", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=9)
    pdf.set_text_color(*MUTED)
    pdf.cell(100, 5, "Managed databases, billed by the month")
    pdf.set_text_color(*INK)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 5, pdf_text(invoice.number), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(8)


def _stamp(pdf: FPDF, text: str, color: tuple, top: float) -> None:
    """A tilted, framed word left of the totals, as a rubber stamp would leave."""
    y_after = pdf.get_y()
    pdf.set_font("Helvetica", "B", 18)
    width = pdf.get_string_width(text) + 10
    x, y = pdf.l_margin + 8, top + 6
    with pdf.rotation(10, x=x + width / 2, y=y + 6):
        pdf.set_draw_color(*color)
        pdf.set_text_color(*color)
        pdf.set_line_width(0.8)
        pdf.rect(x, y, width, 12)
        pdf.set_xy(x, y)
        pdf.cell(width, 12, text, align="C")
    pdf.set_text_color(*INK)
    pdf.set_draw_color(*LINE)
    pdf.set_line_width(0.2)
    pdf.set_xy(pdf.l_margin, y_after)


def _pair(pdf: FPDF, label: str, value: str, x: float, width: float = 60) -> None:
    pdf.set_x(x)
    pdf.set_font("Helvetica", size=9)
    pdf.set_text_color(*MUTED)
    pdf.cell(28, 5.5, label)
    pdf.set_font("Helvetica", size=9.5)
    pdf.set_text_color(*INK)
    pdf.cell(width, 5.5, pdf_text(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _parties(pdf: FPDF, invoice: Invoice) -> None:
    tenant = invoice.tenant
    top = pdf.get_y()
    pdf.set_font("Helvetica", "B", 9)
    pdf.set_text_color(*MUTED)
    pdf.cell(80, 5.5, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.set_font("Helvetica", "B", 11)
    pdf.multi_cell(80, 5.5, pdf_text(tenant.name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=9.5)
    pdf.cell(80, 5.5, pdf_text(_domain(tenant)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()

    pdf.set_y(top)
    right = pdf.l_margin + 95
    _pair(pdf, "Invoice", invoice.number, right)
    _pair(pdf, "Status", invoice.get_status_display(), right)
    _pair(pdf, "Issued", _date(invoice.finalized_at), right)
    _pair(pdf, "Due", _date(invoice.due_at), right)
    if invoice.paid_at:
        _pair(pdf, "Paid", _date(invoice.paid_at), right)
    _pair(pdf, "Period", f"{_moment(invoice.period_start)} –", right)
    _pair(pdf, "", _moment(invoice.period_end), right)
    _pair(pdf, "Reason", invoice.get_reason_display(), right)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 6)


def _lines(pdf: FPDF, invoice: Invoice) -> None:
    heading = FontFace(emphasis="BOLD", color=INK, fill_color=(238, 241, 248))
    pdf.set_font("Helvetica", size=9)
    pdf.set_draw_color(*LINE)
    with pdf.table(col_widths=(86, 28, 33, 33), text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
                   borders_layout="HORIZONTAL_LINES", headings_style=heading, line_height=5.5,
                   padding=(1.5, 2)) as table:
        header = table.row()
        for title in ("Description", "Quantity", "Unit price", "Amount"):
            header.cell(title)
        for line in invoice.lines.all():
            row = table.row()
            row.cell(pdf_text(line.description))
            plain = line.unit_amount_cents is None and line.quantity == 1  # a credit, a flat fee
            row.cell("" if plain else _quantity(line.quantity))
            row.cell("" if line.unit_amount_cents is None else usd_rate(line.unit_amount_cents))
            row.cell(usd(line.amount_cents))
    pdf.ln(4)


def _total_row(pdf: FPDF, label: str, cents: int, *, bold: bool = False) -> None:
    pdf.set_x(pdf.w - pdf.r_margin - 90)
    pdf.set_font("Helvetica", "B" if bold else "", 10.5 if bold else 9.5)
    pdf.cell(56, 6.5, label)
    pdf.cell(34, 6.5, usd(cents), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _totals(pdf: FPDF, invoice: Invoice) -> None:
    if pdf.get_y() + 55 > pdf.page_break_trigger:
        pdf.add_page()  # the totals, their stamp and the note stay together
    stamp = STAMPS.get(invoice.status)
    if stamp is not None:
        _stamp(pdf, *stamp, top=pdf.get_y())
    pdf.set_text_color(*INK)
    _total_row(pdf, "Subtotal", invoice.subtotal_cents)
    _total_row(pdf, "Credit applied", -invoice.credit_applied_cents)
    _total_row(pdf, "Total", invoice.total_cents, bold=True)
    _total_row(pdf, "Amount paid", invoice.amount_paid_cents)
    if invoice.amount_refunded_cents:
        _total_row(pdf, "Refunded to balance", invoice.amount_refunded_cents)
    _total_row(pdf, "Amount due", invoice.amount_due_cents, bold=True)
    pdf.set_font("Helvetica", size=8.5)
    pdf.set_text_color(*MUTED)
    pdf.ln(3)
    note = {
        Invoice.Status.OPEN: "Pay this invoice by card from the Invoices page of your portal.",
        Invoice.Status.PAID: "Thank you: this invoice is paid.",
        Invoice.Status.VOID: "This invoice was voided: nothing is owed on it.",
        Invoice.Status.UNCOLLECTIBLE: "This invoice was written off; paying it still settles "
                                      "your account.",
    }.get(invoice.status, "")
    pdf.multi_cell(0, 4.5, pdf_text(f"All amounts in {invoice.currency}. {note}"),
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _payments(pdf: FPDF, invoice: Invoice) -> None:
    payments = list(invoice.payments.filter(status=Payment.Status.SUCCEEDED).order_by("created_at", "id"))
    if not payments:
        return
    pdf.ln(4)
    pdf.set_text_color(*INK)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, "Payments received", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=9)
    for payment in payments:
        when = payment.received_on.strftime("%d %b %Y") if payment.received_on else _date(payment.created_at)
        how = payment.get_method_display()
        if payment.payment_method is not None and payment.payment_method.last4:
            how += f" {payment.payment_method.brand} ending {payment.payment_method.last4}"
        elif payment.reference:
            how += f", reference {payment.reference}"
        pdf.cell(30, 5.5, when)
        pdf.cell(pdf.epw - 64, 5.5, pdf_text(how))
        pdf.cell(34, 5.5, usd(payment.amount_cents), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
