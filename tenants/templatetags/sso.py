"""`{% sso_sign_in %}`: the "Sign in with SSO" button on a tenant's login page, shown only
when the organisation's plan includes SSO and its settings are enabled. A tag rather than
view context so that the login view (also extended for two-factor sign-in) stays as is."""
from django import template
from django.urls import reverse
from django.utils.http import urlencode

from ..services.sso import sso_login_config

register = template.Library()


@register.inclusion_tag("portal/_sso_button.html", takes_context=True)
def sso_sign_in(context):
    request = context.get("request")
    tenant = getattr(request, "tenant", None)
    if tenant is None or sso_login_config(tenant) is None:
        return {"url": None}
    url = reverse("portal:sso-login")
    next_url = context.get("next")
    return {"url": f"{url}?{urlencode({'next': next_url})}" if next_url else url}
