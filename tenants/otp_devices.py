"""django-otp devices whose secrets never reach the database in clear (SPEC §8, issue 8).

django-otp's own TOTPDevice keeps the authenticator key as hex and StaticToken keeps
recovery codes as typed, so a copy of the database (a backup, a replica, a dump) would be
enough to pass anyone's second factor. Its fields cannot be swapped for sealed ones without
patching the package, so these are our own models on django-otp's abstract Device (the
login machinery, OTPMiddleware and persistent ids work unchanged):

* TotpDevice: the key is sealed with aerolith.crypto under the context ``totp:<user id>``
  (a sealed key copied to another user's row does not open); verification is
  TOTPDevice.verify_token's, step for step — tolerance, drift, `last_t` so a code is never
  accepted twice, and the same exponential throttle — with the row locked while it is
  checked, so two requests racing with one code cannot both pass.
* RecoveryCodeDevice / RecoveryCode: the codes are only ever compared, so they are hashed,
  not sealed. A code has 40 random bits; Argon2id (memory-hard, so guessing does not scale
  on GPUs) with one random salt per sheet means a check costs one hash whatever the number
  of codes, and the digests are compared in constant time. The salt string records the
  parameters, so a sheet keeps verifying after the parameters change.

Imported by tenants.models so Django registers them in the tenants app (public schema:
a person has one second factor for every organisation)."""
import base64
import hmac
import os
from base64 import b32encode
from binascii import unhexlify
from urllib.parse import quote, urlencode

from argon2.low_level import Type, hash_secret_raw
from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django_otp.models import Device, DeviceManager, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP
from django_otp.util import random_hex

from aerolith import clock, crypto

TOTP_KEY_BYTES = 20  # RFC 4226's recommended 160 bits, as django-otp's default
# Argon2id for recovery codes: OWASP's 19 MiB with one pass (~60 ms here), so a sign-in
# with a recovery code costs one such hash and making a sheet of ten well under a second.
RECOVERY_HASH_DEFAULTS = {"time_cost": 1, "memory_cost": 19 * 1024, "parallelism": 1}
_HASH_LEN = 32


def totp_key_context(user_id: int) -> str:
    return f"totp:{user_id}"


class TotpDeviceManager(DeviceManager):
    def create_for(self, user, *, name: str, confirmed: bool) -> "TotpDevice":
        """A new device with a fresh random key, sealed before the row is written."""
        device = self.model(user=user, name=name, confirmed=confirmed)
        device.set_key(random_hex(TOTP_KEY_BYTES))
        device.save()
        return device


class TotpDevice(TimestampMixin, ThrottlingMixin, Device):
    """An authenticator app (TOTP, RFC 6238). Fields as django-otp's TOTPDevice, except
    `key_sealed`: the hex key sealed by aerolith.crypto (see the module docstring)."""

    key_sealed = models.TextField(
        help_text="The hex-encoded key, sealed by the secret box (aerolith.crypto).")
    step = models.PositiveSmallIntegerField(default=30, help_text="The time step in seconds.")
    t0 = models.BigIntegerField(default=0, help_text="The Unix time at which steps start.")
    digits = models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)
    tolerance = models.PositiveSmallIntegerField(
        default=1, help_text="The number of time steps in the past or future to allow.")
    drift = models.SmallIntegerField(
        default=0, help_text="The number of time steps the app is known to be off our clock.")
    last_t = models.BigIntegerField(
        default=-1, help_text="The time step of the last accepted code; the next must be later.")

    objects = TotpDeviceManager()

    class Meta(Device.Meta):
        verbose_name = "authenticator app (TOTP)"
        constraints = [
            # The database itself refuses a key that is not a secret-box token.
            models.CheckConstraint(condition=Q(key_sealed__startswith=f"{crypto.PREFIX}:"),
                                   name="totp_key_sealed"),
        ]

    def set_key(self, hex_key: str) -> None:
        unhexlify(hex_key)  # a malformed key fails here, not at the first sign-in
        self.key_sealed = crypto.encrypt(hex_key, context=totp_key_context(self.user_id))

    @property
    def bin_key(self) -> bytes:
        """The key as bytes (raises crypto.SecretDecryptionFailed when no configured key
        opens it: loud, because every sign-in with this device would fail)."""
        return unhexlify(crypto.decrypt(self.key_sealed, context=totp_key_context(self.user_id)))

    def get_throttle_factor(self):
        return getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1)

    def verify_token(self, token) -> bool:
        verify_allowed, _ = self.verify_is_allowed()
        if not verify_allowed:
            return False
        try:
            token = int(token)
        except (TypeError, ValueError):
            self.throttle_increment(commit=True)
            return False
        with transaction.atomic():
            # The row locked and re-read: `last_t` decides whether the code was used already.
            locked = type(self).objects.select_for_update().filter(pk=self.pk).first()
            if locked is None:  # removed meanwhile (two-factor turned off)
                return False
            for field in ("last_t", "drift", "throttling_failure_count",
                          "throttling_failure_timestamp"):
                setattr(self, field, getattr(locked, field))
            if not self.verify_is_allowed()[0]:
                return False
            totp = TOTP(self.bin_key, self.step, self.t0, self.digits, self.drift)
            totp.time = clock.wall_now().timestamp()
            verified = totp.verify(token, self.tolerance, self.last_t + 1)
            if verified:
                self.last_t = totp.t()
                if getattr(settings, "OTP_TOTP_SYNC", True):
                    self.drift = totp.drift
                self.throttle_reset(commit=False)
                self.set_last_used_timestamp(commit=False)
                self.save(update_fields=["last_t", "drift", "throttling_failure_count",
                                         "throttling_failure_timestamp", "last_used_at"])
            else:
                self.throttle_increment(commit=False)
                self.save(update_fields=["throttling_failure_count",
                                         "throttling_failure_timestamp"])
        return verified

    @property
    def config_url(self) -> str:
        """The otpauth:// URL for the enrolment QR code (Google's Key URI format), as
        TOTPDevice.config_url: label `issuer:email`, issuer from OTP_TOTP_ISSUER."""
        label = str(self.user.get_username())
        params = urlencode({"secret": b32encode(self.bin_key), "algorithm": "SHA1",
                            "digits": self.digits, "period": self.step})
        issuer = getattr(settings, "OTP_TOTP_ISSUER", "")
        if isinstance(issuer, str) and issuer:
            issuer = issuer.replace(":", "")
            label = f"{issuer}:{label}"
            params += f"&issuer={quote(issuer)}"  # RFC 3986 quoting, as django-otp
        return f"otpauth://totp/{quote(label)}?{params}"


def _hash_params() -> dict:
    return {**RECOVERY_HASH_DEFAULTS, **getattr(settings, "AEROLITH_RECOVERY_CODE_HASH", {})}


class RecoveryCodeDevice(TimestampMixin, ThrottlingMixin, Device):
    """One sheet of single-use recovery codes, kept as Argon2id digests under `salt`
    (``argon2id$<time cost>$<memory KiB>$<parallelism>$<base64 salt>``)."""

    salt = models.CharField(max_length=128, help_text="Hash parameters and the sheet's salt.")

    class Meta(Device.Meta):
        verbose_name = "recovery code sheet"

    @classmethod
    def new_salt(cls) -> str:
        p = _hash_params()
        return (f"argon2id${p['time_cost']}${p['memory_cost']}${p['parallelism']}$"
                f"{base64.b64encode(os.urandom(16)).decode()}")

    def digest(self, code: str) -> str:
        _name, time_cost, memory_cost, parallelism, salt = self.salt.split("$")
        return hash_secret_raw(code.encode(), base64.b64decode(salt), time_cost=int(time_cost),
                               memory_cost=int(memory_cost), parallelism=int(parallelism),
                               hash_len=_HASH_LEN, type=Type.ID).hex()

    def get_throttle_factor(self):
        return getattr(settings, "OTP_STATIC_THROTTLE_FACTOR", 1)

    def verify_token(self, token) -> bool:
        """As django-otp's StaticDevice: a right code is used up, a wrong one throttles."""
        verify_allowed, _ = self.verify_is_allowed()
        if not verify_allowed:
            return False
        given = self.digest(str(token))
        match = None
        for pk, digest in self.codes.values_list("pk", "digest"):
            if hmac.compare_digest(given, digest):
                match = pk
        # Deleting by id decides a race between two requests with the same code.
        if match is not None and RecoveryCode.objects.filter(pk=match).delete()[0]:
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save(update_fields=["throttling_failure_count", "throttling_failure_timestamp",
                                     "last_used_at"])
            return True
        self.throttle_increment(commit=False)
        self.save(update_fields=["throttling_failure_count", "throttling_failure_timestamp"])
        return False


class RecoveryCode(models.Model):
    device = models.ForeignKey(RecoveryCodeDevice, related_name="codes", on_delete=models.CASCADE)
    digest = models.CharField(max_length=2 * _HASH_LEN, help_text="Argon2id of the code.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "digest"],
                                               name="recovery_code_unique_per_sheet")]
