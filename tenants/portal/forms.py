from django import forms
from django.contrib.auth.forms import AuthenticationForm

from ..models import Region
from ..permissions import member_principal
from ..throttle import is_locked_out, lockout_text


class SignupForm(forms.Form):
    organization = forms.CharField(label="Organisation name", max_length=100)
    slug = forms.CharField(label="Address", max_length=30,
                           help_text="Your portal will live at <slug>.aerolith.localhost")
    email = forms.CharField(label="Work email", max_length=254)
    password = forms.CharField(widget=forms.PasswordInput, max_length=128)
    plan = forms.ChoiceField()
    region = forms.ChoiceField(choices=Region.choices)

    def __init__(self, *args, plans=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = [(p.code, f"{p.name}") for p in plans]


class EmailLoginForm(forms.Form):
    email = forms.CharField(max_length=254)
    password = forms.CharField(widget=forms.PasswordInput, max_length=128)


class TenantLoginForm(AuthenticationForm):
    """Django's login form, refusing accounts that are not members of this tenant."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "not_member": "This account is not a member of this organisation. Sign in on the "
                      "main site to find your organisations.",
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Email"

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError:
            # django-axes refused the attempt or this failure hit the limit: say so, not
            # "wrong password", since even the right one is refused until the cool-off ends.
            if is_locked_out(self.request):
                raise forms.ValidationError(lockout_text(), code="locked_out") from None
            raise

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if member_principal(self.request.tenant, user) is None:
            raise forms.ValidationError(self.error_messages["not_member"], code="not_member")


class AcceptInvitationForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, max_length=128, required=False)
