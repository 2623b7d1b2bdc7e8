"""The portal's door: the same permission layer as the API (tenants.permissions)."""
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from aerolith.logging import user_var

from ..permissions import ACTION_TEXT, Action, member_principal


def member_required(action: Action = Action.VIEW):
    """Signed-in members of this tenant only; others get the login page (anonymous) or a
    404 (signed in elsewhere). A member whose role lacks `action` gets a 403 page that says
    who can help."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.tenant.is_public:
                raise Http404("The portal lives on your organisation's domain.")
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("portal:login"))
            principal = member_principal(request.tenant, request.user)
            if principal is None:
                raise Http404("No such organisation for this account.")
            request.principal = principal
            user_var.set(request.user.email)
            if not principal.can(action):
                return render(request, "errors/403.html",
                              {"reason": f"Your role ({principal.role}) cannot {ACTION_TEXT[action]}. "
                                         "Ask an owner or admin of the organisation."},
                              status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
