"""The secret box (aerolith/crypto.py, SPEC §8): XChaCha20-Poly1305 with keys from the
environment, key ids for rotation, loud failures for a wrong key, context or tampering."""
import base64
import logging
import os

import pytest

from aerolith import crypto


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_seal_and_open_round_trip_with_a_fresh_nonce_each_time(settings):
    settings.AEROLITH_SECRET_KEYS = _key()
    first, second = crypto.encrypt(b"hunter2", context="x"), crypto.encrypt(b"hunter2", context="x")
    assert first != second and b"hunter2" not in first.encode() and "hunter2" not in first
    assert first.startswith(f"ab1:{crypto.keys()[0].key_id}:")
    assert crypto.decrypt(first, context="x") == crypto.decrypt(second, context="x") == b"hunter2"


def test_rotation_encrypts_with_the_newest_and_opens_with_any_listed_key(settings):
    old, new = _key(), _key()
    settings.AEROLITH_SECRET_KEYS = old
    token = crypto.encrypt(b"secret", context="c")
    settings.AEROLITH_SECRET_KEYS = f"{new}, {old}"
    assert crypto.decrypt(token, context="c") == b"secret" and crypto.needs_rotation(token)
    rotated = crypto.rotate(token, context="c")
    assert crypto.token_key_id(rotated) == crypto.key_id_for(base64.b64decode(new)) != crypto.token_key_id(token)
    assert crypto.rotate(rotated, context="c") == rotated
    settings.AEROLITH_SECRET_KEYS = new  # the old key dropped: rotated tokens still open
    assert crypto.decrypt(rotated, context="c") == b"secret"
    with pytest.raises(crypto.SecretDecryptionFailed, match="not in AEROLITH_SECRET_KEYS"):
        crypto.decrypt(token, context="c")


def test_wrong_key_wrong_context_and_tampering_fail_loudly(settings):
    settings.AEROLITH_SECRET_KEYS = _key()
    token = crypto.encrypt(b"secret", context="signing_key:solana:A")
    with pytest.raises(crypto.SecretDecryptionFailed, match="failed authentication"):
        crypto.decrypt(token, context="signing_key:solana:B")
    prefix, key_id, body = token.split(":")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(crypto.SecretDecryptionFailed, match="failed authentication"):
        crypto.decrypt(f"{prefix}:{key_id}:{base64.urlsafe_b64encode(bytes(raw)).decode()}",
                       context="signing_key:solana:A")
    # a different key that claims the same id (a wrong key put in place of the right one)
    other = crypto._Key(key_id, os.urandom(32))
    settings.AEROLITH_SECRET_KEYS = base64.b64encode(other.key).decode()
    with pytest.raises(crypto.SecretDecryptionFailed):
        crypto.decrypt(token, context="signing_key:solana:A")
    with pytest.raises(crypto.SecretDecryptionFailed, match="Not a secret box token"):
        crypto.decrypt("plaintext", context="")


def test_bad_key_configuration_is_refused_and_test_mode_key_is_only_for_test_mode(settings):
    settings.AEROLITH_SECRET_KEYS = "not base64!"
    with pytest.raises(crypto.SecretBoxMisconfigured, match="entry 1 is not valid base64"):
        crypto.encrypt(b"x")
    settings.AEROLITH_SECRET_KEYS = base64.b64encode(b"short").decode()
    with pytest.raises(crypto.SecretBoxMisconfigured, match="must be 32 bytes"):
        crypto.encrypt(b"x")
    settings.AEROLITH_SECRET_KEYS = ""
    settings.AEROLITH_TEST_MODE = True
    assert crypto.keys()[0].key == crypto.testmode_key()
    settings.AEROLITH_TEST_MODE = False
    with pytest.raises(crypto.SecretBoxMisconfigured, match="not set"):
        crypto.encrypt(b"x")


def test_keys_never_show_their_material_and_nothing_is_logged(settings, caplog):
    settings.AEROLITH_SECRET_KEYS = _key()
    caplog.set_level(logging.DEBUG)
    token = crypto.encrypt(b"topsecret")
    crypto.decrypt(token)
    key = crypto.keys()[0]
    assert settings.AEROLITH_SECRET_KEYS not in repr(key) and "topsecret" not in caplog.text
