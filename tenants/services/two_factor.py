"""Two-factor authentication (SPEC §8) on django-otp's machinery with our own devices
(tenants/otp_devices.py): one authenticator app (TotpDevice, its key sealed by the secret
box) and one sheet of single-use recovery codes (RecoveryCodeDevice, kept as Argon2id
digests) per user, both in the public schema because a person signs in to every
organisation with the same factor.

Required for staff before the admin opens (tenants/staff_otp.py), optional for customers.
Codes are told apart by shape: six digits go to the authenticator app, eight letters and
digits (dashes and spaces ignored) to the recovery codes, so a mistyped app code never
counts against the recovery device's throttle. django-otp throttles each device itself: a
wrong code doubles the wait before the next try (1, 2, 4 … seconds)."""
import re
import secrets
from base64 import b32encode

from django.db import transaction
from django_otp.models import Device, VerifyNotAllowed

from aerolith import clock, crypto
from aerolith.errors import Conflict, ValidationFailed

from ..models import RecoveryCode, RecoveryCodeDevice, Tenant, TotpDevice, User
from ..otp_devices import totp_key_context
from .audit import audit_record

RECOVERY_CODE_COUNT = 10
TOTP_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"
_TOTP_CODE = re.compile(r"\d{6}")
_RECOVERY_CODE = re.compile(r"[a-z2-7]{8}")
CODE_HELP = ("Enter the 6-digit code from your authenticator app, or one of your recovery "
             "codes (8 letters and digits).")


def _code_error(code: str, message: str, field: str = "code") -> ValidationFailed:
    return ValidationFailed({field: [(code, message)]}, detail=message)


def normalize_code(raw) -> str:
    return re.sub(r"[\s-]", "", str(raw or "")).lower()[:32]


# --- reads --------------------------------------------------------------------------------

def totp_device_of(user: User) -> TotpDevice | None:
    return TotpDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def two_factor_enabled(user: User) -> bool:
    return TotpDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_codes_left(user: User) -> int:
    return RecoveryCode.objects.filter(device__user=user, device__confirmed=True).count()


def format_recovery_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def otp_check(user: User, raw_code, *, field: str = "code") -> Device:
    """The device that accepts `raw_code` for `user` (the code is then used up: a TOTP
    step cannot be replayed, a recovery code is deleted). Raises ValidationFailed with
    code otp_malformed, otp_throttled or otp_invalid; a wrong code is recorded by the
    device's throttle, so callers must not roll it back."""
    code = normalize_code(raw_code)
    if _TOTP_CODE.fullmatch(code):
        devices = TotpDevice.objects.filter(user=user, confirmed=True)
    elif _RECOVERY_CODE.fullmatch(code):
        devices = RecoveryCodeDevice.objects.filter(user=user, confirmed=True)
    else:
        raise _code_error("otp_malformed", CODE_HELP, field)
    for device in devices:
        allowed, info = device.verify_is_allowed()
        if not allowed:
            if info and info.get("reason") == VerifyNotAllowed.N_FAILED_ATTEMPTS:
                wait = max(1, int((info["locked_until"] - clock.wall_now()).total_seconds()) + 1)
                raise _code_error("otp_throttled", f"Too many wrong codes: wait {wait} second"
                                  f"{'s' if wait != 1 else ''} and try again.", field)
            raise _code_error("otp_throttled", "Codes are not accepted right now; try again "
                              "in a minute.", field)
        if device.verify_token(code):
            return device
    raise _code_error("otp_invalid", "That code is wrong, expired or already used. "
                      + CODE_HELP, field)


# --- writes -------------------------------------------------------------------------------

def _random_recovery_code() -> str:
    return b32encode(secrets.token_bytes(5)).decode().lower()  # 8 characters, 40 bits


def _recovery_codes_replace(user: User) -> list[str]:
    """A new sheet; only the codes' digests are stored, so this is the one time they exist
    in clear."""
    RecoveryCodeDevice.objects.filter(user=user).delete()
    device = RecoveryCodeDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True,
                                               salt=RecoveryCodeDevice.new_salt())
    codes = []
    while len(codes) < RECOVERY_CODE_COUNT:
        code = _random_recovery_code()
        if code not in codes:
            codes.append(code)
    RecoveryCode.objects.bulk_create(RecoveryCode(device=device, digest=device.digest(code))
                                     for code in codes)
    return codes


def totp_enrolment(user: User) -> TotpDevice:
    """The pending (unconfirmed) authenticator device whose secret the enrolment page
    shows; the same one on every visit until it is confirmed, so a reload does not
    invalidate a QR code already scanned."""
    if two_factor_enabled(user):
        raise Conflict("Two-factor authentication is already on for this account. Turn it "
                       "off first to move it to a new authenticator app.",
                       code="two_factor_enabled")
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).values_list("pk").get()
        device = TotpDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
        if device is None:
            device = TotpDevice.objects.create_for(user, name=TOTP_NAME, confirmed=False)
    return device


def totp_enrol_confirm(*, user: User, code, tenant: Tenant | None = None) -> tuple[TotpDevice, list[str]]:
    """Turn two-factor authentication on with the first code from the app: the pending
    device becomes confirmed and a new sheet of recovery codes is made and returned — the
    only time they can be read. Raises Conflict (already on, or nothing pending) or
    ValidationFailed (the code)."""
    device = TotpDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if two_factor_enabled(user):
        raise Conflict("Two-factor authentication is already on for this account.",
                       code="two_factor_enabled")
    if device is None:
        raise Conflict("No enrolment is in progress: open the set-up page again to get a "
                       "QR code.", code="no_enrolment")
    normalized = normalize_code(code)
    if not _TOTP_CODE.fullmatch(normalized):
        raise _code_error("otp_malformed", "Enter the 6-digit code your authenticator app "
                          "shows for Aerolith Cloud.")
    allowed, _info = device.verify_is_allowed()
    # Outside the transaction: a wrong code must stay counted by the device's throttle.
    if not allowed or not device.verify_token(normalized):
        raise _code_error("otp_invalid", "That code does not match. Check that your phone's "
                          "clock is right and enter the code the app shows now.")
    with transaction.atomic():
        locked = TotpDevice.objects.select_for_update().get(pk=device.pk)
        if locked.confirmed or two_factor_enabled(user):
            raise Conflict("Two-factor authentication is already on for this account.",
                           code="two_factor_enabled")
        locked.confirmed = True
        locked.save(update_fields=["confirmed"])
        TotpDevice.objects.filter(user=user, confirmed=False).delete()
        codes = _recovery_codes_replace(user)
        audit_record(action="two_factor.enabled", tenant=tenant, actor=user, target=user,
                     after={"recovery_codes": len(codes)})
    return locked, codes


def recovery_codes_regenerate(*, user: User, tenant: Tenant | None = None) -> list[str]:
    """A new sheet of recovery codes; the old ones stop working. Returned once."""
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).values_list("pk").get()
        if not two_factor_enabled(user):
            raise Conflict("Two-factor authentication is off for this account; turn it on "
                           "first.", code="two_factor_disabled")
        codes = _recovery_codes_replace(user)
        audit_record(action="two_factor.recovery_codes_regenerated", tenant=tenant, actor=user,
                     target=user, after={"recovery_codes": len(codes)})
    return codes


def two_factor_disable(*, user: User, tenant: Tenant | None = None) -> None:
    """Remove the authenticator app and the recovery codes. Staff cannot: the admin
    requires a second factor, so they would only be sent to enrol again."""
    if user.is_staff:
        raise Conflict("Staff accounts must keep two-factor authentication.",
                       code="two_factor_required")
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).values_list("pk").get()
        if not two_factor_enabled(user):
            raise Conflict("Two-factor authentication is already off for this account.",
                           code="two_factor_disabled")
        TotpDevice.objects.filter(user=user).delete()
        RecoveryCodeDevice.objects.filter(user=user).delete()
        audit_record(action="two_factor.disabled", tenant=tenant, actor=user, target=user)


def totp_keys_reseal(*, actor="cli") -> int:
    """Re-seal every authenticator key that is not under the newest secret-box key (after
    a key was added in front of AEROLITH_SECRET_KEYS), so the old key can then be retired.
    Each row is locked while it changes; returns how many were re-sealed; safe to run twice.
    A key no listed secret-box key opens raises SecretDecryptionFailed and nothing changes."""
    resealed = 0
    with transaction.atomic():
        for device in TotpDevice.objects.select_for_update().order_by("pk"):
            if not crypto.needs_rotation(device.key_sealed):
                continue
            device.key_sealed = crypto.rotate(device.key_sealed,
                                              context=totp_key_context(device.user_id))
            device.save(update_fields=["key_sealed"])
            resealed += 1
        if resealed:
            audit_record(action="two_factor.keys_resealed", actor=actor,
                         after={"count": resealed, "key_id": crypto.keys()[0].key_id})
    return resealed
