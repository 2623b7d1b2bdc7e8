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
