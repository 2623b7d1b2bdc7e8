"""The two-factor devices themselves (tenants/otp_devices.py, SPEC §8): the authenticator key
never reaches the database in clear and survives a secret-box key rotation, recovery codes
are stored only as Argon2id digests, and a code is never accepted twice."""
import base64
import io
import os
from base64 import b32encode
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django_otp.oath import TOTP

from aerolith import crypto
from aerolith.errors import ValidationFailed
from tenants import otp_devices
from tenants.models import AuditEvent, RecoveryCodeDevice, TotpDevice
from tenants.services import two_factor
from tests.tenants.test_two_factor import code_for, enable, staff


def _rows(table: str, user_id: int, column: str = "user_id") -> str:
    """Every column of the user's rows as the database returns them, as one text."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(string_agg(row_to_json(t)::text, ' '), '') "  # noqa: S608
                       f"FROM {table} t WHERE {column} = %s", [user_id])
        return cursor.fetchone()[0]


def _secret_box_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.mark.django_db
def test_the_authenticator_key_is_sealed_in_the_database():
    user = staff()
    device, codes = enable(user)
    hex_key = device.bin_key.hex()
    row = _rows("tenants_totpdevice", user.pk)
    assert device.key_sealed in row and device.key_sealed.startswith("ab1:")
    b32 = b32encode(device.bin_key).decode()
    for clear in (hex_key, hex_key.upper(), b32, b32.rstrip("="), b32.lower()):
        assert clear not in row
    assert crypto.decrypt(device.key_sealed, context=f"totp:{user.pk}").decode() == hex_key
    assert len(device.bin_key) == otp_devices.TOTP_KEY_BYTES


@pytest.mark.django_db
def test_the_database_refuses_a_key_in_clear_and_a_sealed_key_moved_to_another_user():
    user, other = staff(), staff("ops2@aerolith.test")
    device, _codes = enable(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        TotpDevice.objects.filter(pk=device.pk).update(key_sealed=device.bin_key.hex())
    theirs = TotpDevice.objects.create_for(other, name="app", confirmed=True)
    TotpDevice.objects.filter(pk=theirs.pk).update(key_sealed=device.key_sealed)
    theirs.refresh_from_db()
    with pytest.raises(crypto.SecretDecryptionFailed):
        theirs.bin_key  # noqa: B018  the context names the user: the copy does not open


@pytest.mark.django_db
def test_recovery_codes_are_in_no_column_only_their_digests():
    user = staff()
    _device, codes = enable(user)
    sheet = RecoveryCodeDevice.objects.get(user=user)
    stored = " ".join([_rows("tenants_recoverycodedevice", user.pk),
                       _rows("tenants_recoverycode", sheet.pk, "device_id"),
                       _rows("tenants_totpdevice", user.pk),
                       " ".join(str(e.after) for e in AuditEvent.objects.filter(actor=user))])
    assert len(codes) == sheet.codes.count() == 10
    for code in codes:
        for form in (code, code.upper(), two_factor.format_recovery_code(code)):
            assert form not in stored
    assert set(sheet.codes.values_list("digest", flat=True)) == {sheet.digest(c) for c in codes}
    assert sheet.salt.startswith("argon2id$1$64$1$")  # test settings: Argon2id's floor


@pytest.mark.django_db
def test_a_sheet_keeps_its_hash_parameters_and_each_code_works_once():
    user = staff()
    with override_settings(AEROLITH_RECOVERY_CODE_HASH={}):  # the production parameters
        _device, codes = enable(user)
    sheet = RecoveryCodeDevice.objects.get(user=user)
    assert sheet.salt.startswith("argon2id$1$19456$1$")
    assert two_factor.otp_check(user, codes[2]).pk == sheet.pk  # under the test settings
    assert two_factor.recovery_codes_left(user) == 9
    with pytest.raises(ValidationFailed) as refused:
        two_factor.otp_check(user, codes[2])
    assert refused.value.field_errors()[0]["code"] == "otp_invalid"


@pytest.mark.django_db
def test_a_key_sealed_under_an_old_secret_box_key_verifies_after_rotation(settings):
    old, new = _secret_box_key(), _secret_box_key()
    settings.AEROLITH_SECRET_KEYS = old
    user = staff()
    device, _codes = enable(user)
    sealed_before = device.key_sealed

    settings.AEROLITH_SECRET_KEYS = f"{new},{old}"  # a new key in front; the old still opens
    assert crypto.needs_rotation(sealed_before)
    with override_settings(OTP_TOTP_THROTTLE_FACTOR=0):
        assert two_factor.otp_check(user, code_for(device, 1)).pk == device.pk
    out = io.StringIO()
    call_command("two_factor_reseal", stdout=out)
    assert "Re-sealed 1 two-factor key" in out.getvalue()
    device.refresh_from_db()
    assert device.key_sealed != sealed_before and not crypto.needs_rotation(device.key_sealed)
    assert AuditEvent.objects.filter(action="two_factor.keys_resealed").exists()
    assert two_factor.totp_keys_reseal() == 0  # safe to run twice

    settings.AEROLITH_SECRET_KEYS = new  # the old key retired
    assert two_factor.otp_check(user, code_for(device, 1)).pk == device.pk  # drift learnt: +1


@pytest.mark.django_db
def test_reseal_with_a_key_no_longer_configured_fails_loudly_and_changes_nothing(settings):
    settings.AEROLITH_SECRET_KEYS = _secret_box_key()
    device, _codes = enable(staff())
    settings.AEROLITH_SECRET_KEYS = _secret_box_key()
    with pytest.raises(CommandError, match="not in AEROLITH_SECRET_KEYS.*Nothing was changed"):
        call_command("two_factor_reseal")
    assert TotpDevice.objects.get(pk=device.pk).key_sealed == device.key_sealed


@pytest.mark.django_db
def test_a_code_is_accepted_once_and_never_one_of_an_earlier_step(monkeypatch):
    """As django-otp's TOTPDevice: one step either side is accepted (the app's drift is
    learnt), a code of the step last accepted or an earlier one never again."""
    user = staff()
    device, _codes = enable(user)
    device.refresh_from_db()
    now = datetime(2031, 5, 6, 7, 8, 15, tzinfo=UTC)
    monkeypatch.setattr(otp_devices.clock, "wall_now", lambda: now)

    def code(steps: int) -> str:
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, steps)
        totp.time = now.timestamp()
        return f"{totp.token():06d}"

    with override_settings(OTP_TOTP_THROTTLE_FACTOR=0):
        with pytest.raises(ValidationFailed):
            two_factor.otp_check(user, code(2))  # beyond the tolerance
        assert two_factor.otp_check(user, code(-1))
        device.refresh_from_db()
        assert device.drift == -1 and device.last_t == int(now.timestamp()) // 30 - 1
        assert device.throttling_failure_count == 0 and device.last_used_at is not None
        with pytest.raises(ValidationFailed) as replay:
            two_factor.otp_check(user, code(-1))  # the same code again
        assert replay.value.field_errors()[0]["code"] == "otp_invalid"
        assert two_factor.otp_check(user, code(0))  # the next step
        for used in (code(-1), code(0)):
            with pytest.raises(ValidationFailed):
                two_factor.otp_check(user, used)
    device.refresh_from_db()
    assert device.throttling_failure_count == 2  # the replay before the success reset it


@pytest.mark.django_db
def test_the_qr_code_url_carries_the_opened_key():
    user = staff()
    device = two_factor.totp_enrolment(user)
    secret = b32encode(device.bin_key).decode()
    assert device.config_url == (
        f"otpauth://totp/Aerolith%20Cloud%3Aops%40aerolith.test?secret={secret}"
        "&algorithm=SHA1&digits=6&period=30&issuer=Aerolith%20Cloud")


@pytest.mark.django_db
def test_django_otps_own_device_tables_are_not_created():
    tables = connection.introspection.table_names()
    assert "tenants_totpdevice" in tables and "tenants_recoverycode" in tables
    assert not [t for t in tables if t.startswith(("otp_totp_", "otp_static_"))]
