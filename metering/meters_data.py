"""Built-in meters (SPEC §5) and their default overage prices (SPEC §3), in cents."""
from decimal import Decimal

BUILTIN_METERS = [
    dict(code="api_calls", name="API calls", unit="calls", aggregation="count",
         unit_price_cents=Decimal(1), price_per=1000),
    dict(code="storage_gb", name="Storage", unit="GB-months", aggregation="weighted_sum",
         unit_price_cents=Decimal(25), price_per=1),
    dict(code="compute_hours", name="Compute", unit="hours", aggregation="sum",
         unit_price_cents=Decimal(10), price_per=1),
    dict(code="bandwidth_gb", name="Bandwidth", unit="GB", aggregation="sum",
         unit_price_cents=Decimal(9), price_per=1),
]
