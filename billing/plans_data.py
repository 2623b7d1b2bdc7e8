"""The plans table of SPEC §3 as data, loaded by migration billing/0002 and reused by the
demo loader. Storage, compute and bandwidth are in GB / hours; None means unlimited."""
from decimal import Decimal

PLANS = [
    dict(code="free", name="Free", price_cents=0, max_databases=1, storage_gb=Decimal("0.5"),
         api_calls=10_000, compute_hours=Decimal(10), bandwidth_gb=Decimal(5),
         support="community", overage_allowed=False, sort_order=1),
    dict(code="starter", name="Starter", price_cents=2900, max_databases=3,
         storage_gb=Decimal(5), api_calls=100_000, compute_hours=Decimal(100),
         bandwidth_gb=Decimal(50), support="email", sort_order=2),
    dict(code="professional", name="Professional", price_cents=9900, max_databases=None,
         storage_gb=Decimal(100), api_calls=5_000_000, compute_hours=Decimal(750),
         bandwidth_gb=Decimal(500), support="priority", sort_order=3),
    dict(code="enterprise", name="Enterprise", price_cents=49900, max_databases=None,
         storage_gb=Decimal(1000), api_calls=None, compute_hours=Decimal(5000),
         bandwidth_gb=Decimal(5000), support="24/7 phone", sort_order=4),
    dict(code="custom", name="Custom", price_cents=0, max_databases=None, storage_gb=None,
         api_calls=None, compute_hours=None, bandwidth_gb=None, support="dedicated",
         is_public=False, is_custom=True, sort_order=5),
]
