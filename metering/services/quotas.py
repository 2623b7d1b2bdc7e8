"""Allowances in force: hard limits on plans without overage (HTTP 429 with the limit,
what was used and when it resets) and notices at 80% and 100% of each allowance, once per
period."""
import logging
import time
from datetime import datetime

from aerolith.errors import DomainError
from billing.selectors import plan_allowances

from ..models import Meter
from ..quantities import decimal_to_micro, micro_to_decimal

logger = logging.getLogger(__name__)
THRESHOLDS = (80, 100)
_CACHE_SECONDS = 30.0
_cache: dict = {}


class QuotaExceeded(DomainError):
    status = 429
    code = "quota_exceeded"
    title = "Plan limit reached"


def _cached(name, loader):
    hit = _cache.get(name)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    value = loader()
    _cache[name] = (time.monotonic() + _CACHE_SECONDS, value)
    return value


def meters_by_code() -> dict[str, Meter]:
    """Active meters, cached for 30 s per process (a new meter is usable within 30 s)."""
    return _cached("meters", lambda: {m.code: m for m in Meter.objects.filter(is_active=True)})


def allowances_micro(plan) -> dict[int, int | None]:
    """meter id -> included micro-units (None: unlimited) for `plan`, cached for 30 s."""
    def load():
        return {meter_id: (None if included is None else decimal_to_micro(included))
                for meter_id, (included, _price) in plan_allowances(plan).items()}
    return _cached(("allowances", plan.pk), load)


def cache_clear() -> None:
    _cache.clear()


def quota_error(meter: Meter, included_micro: int, used_micro: int, reset_at: datetime) -> QuotaExceeded:
    limit, used = micro_to_decimal(included_micro).normalize(), micro_to_decimal(used_micro).normalize()
    return QuotaExceeded(
        f"The {meter.name} limit of your plan ({limit} {meter.unit}) is reached: {used} used. "
        f"It resets at {reset_at.isoformat()}; upgrade for more now.",
        extra={"meter": meter.code, "limit": format(limit, "f"), "used": format(used, "f"),
               "reset_at": reset_at.isoformat()},
    )


def crossed_thresholds(before_micro: int, after_micro: int, included_micro: int) -> list[int]:
    """The notice thresholds (percent) passed when usage went from before to after."""
    if not included_micro:
        return []
    return [p for p in THRESHOLDS
            if before_micro * 100 < p * included_micro <= after_micro * 100]


def after_ingest(tenant, subscription, totals: dict[str, int], added: dict[str, int]) -> None:
    """Queue a notice for every allowance threshold this batch crossed."""
    from ..tasks import usage_threshold_notify

    allowances = allowances_micro(subscription.plan)
    meters = meters_by_code()
    for code, after in totals.items():
        meter = meters.get(code)
        included = allowances.get(meter.pk) if meter else None
        if not included:
            continue
        for percent in crossed_thresholds(after - added.get(code, 0), after, included):
            try:
                usage_threshold_notify.delay(tenant.pk, meter.pk,
                                             subscription.current_period_start.isoformat(),
                                             percent, after, included)
            except Exception:  # noqa: BLE001 - the events are stored; the sweep sends it later
                logger.warning("Threshold notice for tenant %s not queued", tenant.pk,
                               exc_info=True)


def reached_thresholds(used_micro: int, included_micro: int) -> list[int]:
    return [p for p in THRESHOLDS if included_micro and p * included_micro <= used_micro * 100]
