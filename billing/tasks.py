"""Celery tasks of billing: thin, idempotent, taking ids."""
from celery import shared_task

from .services.crypto import quote_refresh, quotes_scan


@shared_task(ignore_result=True)
def crypto_quotes_scan() -> dict:
    """Beat, every AEROLITH_CRYPTO_SCAN_SECONDS (15 s): look on chain for the payments of
    open and recent crypto quotes, apply them and expire what is due. Safe when passes
    overlap or run on two workers: quotes are locked and transfers stored once."""
    return quotes_scan()


@shared_task(ignore_result=True)
def crypto_quote_refresh(quote_id: int) -> str:
    """One quote at once (the admin's "look on chain now")."""
    return quote_refresh(quote_id=quote_id).status


@shared_task(ignore_result=True)
def crypto_outgoing_confirm() -> dict:
    """Beat: statuses of refunds sent on chain (confirmed, failed with the credit
    restored, or a signed one broadcast again with the same bytes). Safe to overlap."""
    from .services.sending import outgoing_confirm_pass
    from .services.sweeping import tron_confirm_pass

    counts = outgoing_confirm_pass()
    for name, count in tron_confirm_pass().items():  # Tron sweeps, same counts
        counts[name] = counts.get(name, 0) + count
    return counts


@shared_task(ignore_result=True)
def crypto_outgoing_send(outgoing_id: int) -> str:
    """Sign (once) and broadcast (the persisted bytes) one outgoing transaction."""
    from .models import OutgoingTransaction
    from .services.sending import outgoing_send
    from .services.sweeping import tron_send

    if OutgoingTransaction.objects.filter(pk=outgoing_id, network="tron").exists():
        return tron_send(outgoing_id=outgoing_id).status
    return outgoing_send(outgoing_id=outgoing_id).status
