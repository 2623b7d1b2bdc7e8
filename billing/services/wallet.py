"""The wallet's set-up (SPEC §6 "Sending"): signing keys imported or generated, sealed by
the secret box at once; addresses listed; the Tron extended public key checked. The
plaintext of a secret key lives only in local variables here and is never returned,
logged or audited — only the public address is."""
from django.db import transaction

from aerolith import crypto as secret_box
from aerolith.errors import Conflict, ValidationFailed
from tenants.services.audit import audit_record

from ..models import SigningKey
from ..payments.solana_send import parse_secret_key

NETWORKS_WITH_KEYS = ("solana",)  # generated here
NETWORKS_IMPORTED = ("solana", "tron")


def _network_checked(network: str, allowed=NETWORKS_WITH_KEYS) -> None:
    if network not in allowed:
        raise ValidationFailed({"network": [("network_unsupported",
                                             f"Signing keys are kept for {', '.join(allowed)} only; "
                                             "Tron receives through an extended public key (import-xpub).")]})


def _store(network: str, address: str, secret: bytes, label: str, actor) -> SigningKey:
    with transaction.atomic():
        if SigningKey.objects.filter(network=network, address=address).exists():
            raise Conflict(f"A {network} key for {address} is already stored.", code="signing_key_exists")
        key = SigningKey(network=network, address=address, label=label[:100])
        key.secret_sealed = secret_box.encrypt(secret, context=key.secret_context)
        key.save(force_insert=True)
        audit_record(action="wallet.signing_key_added", actor=actor, target=key,
                     after={"network": network, "address": address, "label": key.label})
    return key


def signing_key_import(*, network: str, secret_text: str, label: str = "", actor="cli") -> SigningKey:
    """Seal and store a secret key given as text (base58 or a keypair file's JSON array).
    Raises ValidationFailed for a bad key (the message never repeats it) or Conflict
    when that address is stored already; nothing is stored then. Tron takes the
    account-level extended private key (see tron_xprv_import)."""
    _network_checked(network, NETWORKS_IMPORTED)
    if network == "tron":
        return tron_xprv_import(xprv_text=secret_text, label=label, actor=actor)
    try:
        secret = parse_secret_key(secret_text)
    except ValueError as error:
        raise ValidationFailed({"secret_key": [("invalid_secret_key", str(error))]}) from None
    from solders.keypair import Keypair

    address = str(Keypair.from_bytes(secret).pubkey())
    return _store(network, address, secret, label, actor)


def signing_key_generate(*, network: str, label: str = "", actor="cli") -> SigningKey:
    """A new random key, sealed and stored; only its address is ever shown."""
    _network_checked(network)
    from solders.keypair import Keypair

    keypair = Keypair()
    return _store(network, str(keypair.pubkey()), bytes(keypair), label, actor)


def signing_keys():
    return SigningKey.objects.order_by("network", "created_at", "id")


def tron_xpub_checked(xpub: str) -> str:
    """The first receive address (index 0) of a Tron account-level extended public key
    (m/44'/195'/0'), as billing.payments.tron derives it. Raises ValidationFailed for a
    private key or anything that is not a usable xpub."""
    from ..payments.tron import deposit_address

    text = (xpub or "").strip()
    if text[1:4] == "prv":
        raise ValidationFailed({"xpub": [("private_key_given",
                                          "That is an extended PRIVATE key; give the extended public key "
                                          "(xpub…) — receiving needs no private key.")]})
    try:
        return deposit_address(text, 0)
    except Exception:  # noqa: BLE001 - bip-utils raises several kinds for bad keys
        raise ValidationFailed({"xpub": [("invalid_xpub", "That is not a BIP32 extended public key (xpub…) "
                                                          "of a Tron account.")]}) from None


def tron_xprv_import(*, xprv_text: str, label: str = "", actor="cli") -> SigningKey:
    """Seal the account-level extended private key (m/44'/195'/0') that sweeps Tron
    deposit addresses. It must be the private side of AEROLITH_TRON_XPUB; it is stored
    under the receive address 0/0. Raises ValidationFailed (never repeating the key)."""
    from django.conf import settings

    from ..payments.tron import deposit_address
    from ..payments.tron_tx import account_from_xprv

    xpub = getattr(settings, "AEROLITH_TRON_XPUB", "") or ""
    if not xpub:
        raise ValidationFailed({"network": [("tron_xpub_missing", "Set AEROLITH_TRON_XPUB first; the private "
                                                                  "key is checked against it.")]})
    text = (xprv_text or "").strip()
    try:
        account = account_from_xprv(text)
    except ValueError as error:
        raise ValidationFailed({"secret_key": [("invalid_secret_key", str(error))]}) from None
    if account.PublicKey().ToExtended() != xpub:
        raise ValidationFailed({"secret_key": [("xpub_mismatch", "That extended private key does not belong "
                                                                 "to AEROLITH_TRON_XPUB; nothing stored.")]})
    return _store("tron", deposit_address(xpub, 0), text.encode(), label, actor)


def signing_keys_reseal(*, actor="cli") -> int:
    """Re-seal every stored secret that is not under the newest secret-box key (after a
    key was added in front of AEROLITH_SECRET_KEYS), so the old key can then be retired.
    Each row is locked while it changes; returns how many were re-sealed. A secret no
    listed key opens raises SecretDecryptionFailed and nothing more is changed."""
    resealed = 0
    with transaction.atomic():
        for key in SigningKey.objects.select_for_update().order_by("pk"):
            if not secret_box.needs_rotation(key.secret_sealed):
                continue
            key.secret_sealed = secret_box.rotate(key.secret_sealed, context=key.secret_context)
            key.save(update_fields=["secret_sealed"])
            resealed += 1
        if resealed:
            audit_record(action="wallet.signing_keys_resealed", actor=actor,
                         after={"count": resealed, "key_id": secret_box.keys()[0].key_id})
    return resealed
