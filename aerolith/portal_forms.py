"""What every portal view shares: a service's refusal shown as form errors, the field-less
confirmation form, and the refusal of changes while an organisation is suspended or
cancelled (the portal refuses what the API refuses, see tenants.permissions)."""
from django import forms

from aerolith.errors import DomainError


class ActionForm(forms.Form):
    """A confirmation button without fields: carries only the refusal, if any."""


def apply_errors(form: forms.Form, error: DomainError, *, renames: dict | None = None,
                 texts: dict | None = None) -> None:
    """The refusal as form errors: on the field it names when the form has that field
    (`renames` maps a service's field name to the form's), else above the form. `texts`
    may replace a message by (field, code) with wording fit for the page."""
    renames, texts = renames or {}, texts or {}
    for item in error.field_errors() or [{"field": None, "code": error.code,
                                          "detail": error.detail}]:
        field = renames.get(item["field"], item["field"])
        detail = texts.get((item["field"], item.get("code")), item["detail"])
        form.add_error(field if field in form.fields else None, detail)


def refused_while_inactive(request) -> str | None:
    """Why a change is refused now, or None: a suspended or cancelled organisation changes
    nothing until it pays."""
    from tenants.permissions import INACTIVE

    if request.tenant.status in INACTIVE:
        return (f"This organisation is {request.tenant.get_status_display().lower()}, so nothing "
                "can be created or changed. Pay the open invoices on the Billing page to restore "
                "full service.")
    return None
