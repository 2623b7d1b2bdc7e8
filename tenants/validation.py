"""Pure checks for signup input, shared by the API serializer, the portal form and the
service (which re-checks, because it is the last line before the database)."""
import re

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")


def slug_problems(slug: str) -> list[tuple[str, str]]:
    if not slug:
        return [("required", "Choose a slug: it becomes your address, e.g. 'acme'.")]
    if not SLUG_RE.match(slug) or "--" in slug:
        return [("invalid_slug", "A slug is 3 to 30 lowercase letters, digits and single "
                 "hyphens, starting with a letter and not ending with a hyphen.")]
    if slug in settings.AEROLITH_RESERVED_SLUGS or slug.startswith(("pool-", "tenant-")):
        return [("reserved_slug", f"'{slug}' is reserved. Choose another slug.")]
    return []


def email_problems(email: str) -> list[tuple[str, str]]:
    try:
        validate_email(email)
    except ValidationError:
        return [("invalid_email", "Enter a valid email address, e.g. ada@example.com.")]
    return []


def password_problems(password: str, email: str = "") -> list[tuple[str, str]]:
    from .models import User

    try:
        validate_password(password, user=User(email=email))
    except ValidationError as exc:
        return [(error.code or "weak_password", " ".join(error.messages)) for error in exc.error_list]
    return []


def schema_name_for(slug: str) -> str:
    return "t_" + slug.replace("-", "_")
