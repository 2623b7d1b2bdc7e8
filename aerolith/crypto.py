"""The one secret box (SPEC §8): secrets at rest — signing keys, and later database role
passwords and webhook secrets — are sealed here and nowhere else.

XChaCha20-Poly1305 (libsodium through PyNaCl's `nacl.secret.Aead`): a random 24-byte nonce
per message, so nonces never need tracking, and a 16-byte tag that makes any change to
the ciphertext, its key id or its context fail to open.

Keys come from the environment: AEROLITH_SECRET_KEYS is a comma-separated list of
base64-encoded 32-byte keys, newest first. New secrets are sealed with the newest; any
listed key opens. A sealed token names its key by id (the first 8 hex digits of
SHA-256 over the key, not secret), so after adding a new key in front, `rotate(token)`
re-seals old tokens with it and the old key can be dropped once none is left.

Token format (ASCII, fits a TextField): ``ab1:<key id>:<base64url(nonce ‖ ciphertext)>``.
The key id and an optional `context` (what the secret is, e.g. "signing_key:solana")
are authenticated as associated data: a token copied to another purpose does not open.

Test mode only: when AEROLITH_SECRET_KEYS is empty and AEROLITH_TEST_MODE is on, one key
is derived deterministically from a fixed label (TEST_KEY_LABEL). It is public — anything
sealed with it is readable by anyone who reads this file — so it is refused outside test
mode; production must set AEROLITH_SECRET_KEYS.
Generate a key: ``python -c "import os, base64; print(base64.b64encode(os.urandom(32)).decode())"``.

Nothing here logs or repr()s a plaintext or a key; errors name the key id only.
"""
import base64
import binascii
import hashlib
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret
import nacl.utils
from django.conf import settings

PREFIX = "ab1"
KEY_BYTES = nacl.secret.Aead.KEY_SIZE  # 32
TEST_KEY_LABEL = b"aerolith test-mode secret box key - NOT SECRET, never use in production"


class SecretBoxError(Exception):
    """Base for every secret box failure."""


class SecretBoxMisconfigured(SecretBoxError):
    """AEROLITH_SECRET_KEYS is missing or malformed."""


class SecretDecryptionFailed(SecretBoxError):
    """A token could not be opened: unknown key id, wrong key, wrong context, or tampered."""


@dataclass(frozen=True, repr=False)
class _Key:
    key_id: str
    key: bytes

    def __repr__(self):  # never show key material
        return f"<secret box key {self.key_id}>"


def key_id_for(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _parse_keys(text: str) -> list[_Key]:
    keys = []
    for position, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            key = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            raise SecretBoxMisconfigured(
                f"AEROLITH_SECRET_KEYS entry {position + 1} is not valid base64.") from None
        if len(key) != KEY_BYTES:
            raise SecretBoxMisconfigured(
                f"AEROLITH_SECRET_KEYS entry {position + 1} decodes to {len(key)} bytes; "
                f"each key must be {KEY_BYTES} bytes.")
        keys.append(_Key(key_id_for(key), key))
    return keys


def testmode_key() -> bytes:
    """The deterministic test-mode key (public: for tests and local test mode only)."""
    return hashlib.sha256(TEST_KEY_LABEL).digest()


def keys() -> list[_Key]:
    """The configured keys, newest first. Raises SecretBoxMisconfigured when none is set
    outside test mode."""
    configured = _parse_keys(getattr(settings, "AEROLITH_SECRET_KEYS", "") or "")
    if configured:
        return configured
    if getattr(settings, "AEROLITH_TEST_MODE", False):
        key = testmode_key()
        return [_Key(key_id_for(key), key)]
    raise SecretBoxMisconfigured(
        "AEROLITH_SECRET_KEYS is not set: give one or more base64-encoded 32-byte keys, newest first.")


def _aad(key_id: str, context: str) -> bytes:
    return f"{PREFIX}|{key_id}|{context}".encode()


def encrypt(plaintext: bytes | str, *, context: str = "") -> str:
    """Seal `plaintext` with the newest key; returns an ASCII token."""
    data = plaintext.encode() if isinstance(plaintext, str) else bytes(plaintext)
    newest = keys()[0]
    nonce = nacl.utils.random(nacl.secret.Aead.NONCE_SIZE)
    sealed = nacl.secret.Aead(newest.key).encrypt(data, _aad(newest.key_id, context), nonce)
    return f"{PREFIX}:{newest.key_id}:{base64.urlsafe_b64encode(bytes(sealed)).decode()}"


def token_key_id(token: str) -> str:
    """The id of the key a token was sealed with (raises SecretDecryptionFailed if malformed)."""
    return _split(token)[0]


def _split(token: str) -> tuple[str, bytes]:
    parts = token.split(":") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != PREFIX:
        raise SecretDecryptionFailed("Not a secret box token (expected 'ab1:<key id>:<data>').")
    try:
        body = base64.urlsafe_b64decode(parts[2].encode())
    except (binascii.Error, ValueError):
        raise SecretDecryptionFailed(f"Secret box token for key {parts[1]} is not valid base64.") from None
    return parts[1], body


def decrypt(token: str, *, context: str = "") -> bytes:
    """Open a token sealed by `encrypt` with the same `context`. Raises
    SecretDecryptionFailed — loudly, naming the key id — when its key is not configured,
    or the key, context or bytes do not match."""
    key_id, body = _split(token)
    key = next((k for k in keys() if k.key_id == key_id), None)
    if key is None:
        raise SecretDecryptionFailed(
            f"Secret sealed with key {key_id}, which is not in AEROLITH_SECRET_KEYS; "
            "add that key back (after the newest) to open it.")
    try:
        return nacl.secret.Aead(key.key).decrypt(body, _aad(key_id, context))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise SecretDecryptionFailed(
            f"Secret sealed with key {key_id} failed authentication: wrong key, wrong purpose "
            "or tampered data.") from None


def rotate(token: str, *, context: str = "") -> str:
    """The token re-sealed with the newest key (unchanged when already sealed with it)."""
    if token_key_id(token) == keys()[0].key_id:
        return token
    return encrypt(decrypt(token, context=context), context=context)


def needs_rotation(token: str) -> bool:
    return token_key_id(token) != keys()[0].key_id
