"""The plans table of SPEC §3 as data, loaded by migrations and reused by the demo loader.

Allowances are per meter code (see metering.meters_data); None means unlimited. Meters a
plan does not list get no allowance. Overage prices come from the meter unless a plan
names its own in `prices` (cents per the meter's `price_per` units). `api_rate_per_second`
is the API rate limit of SPEC §8 (None: unlimited; the Custom template leaves it to staff).
"""
from decimal import Decimal

PLANS = [
    dict(code="free", name="Free", price_cents=0, max_databases=1, support="community",
         overage_allowed=False, sort_order=1, api_rate_per_second=5,
         database_placement="shared_schema",
         allowances={"api_calls": 10_000, "storage_gb": Decimal("0.5"), "compute_hours": 10,
                     "bandwidth_gb": 5}),
    dict(code="starter", name="Starter", price_cents=2900, max_databases=3, support="email",
         sort_order=2, api_rate_per_second=20,
         database_placement="shared_schema",
         allowances={"api_calls": 100_000, "storage_gb": 5, "compute_hours": 100,
                     "bandwidth_gb": 50}),
    dict(code="professional", name="Professional", price_cents=9900, max_databases=None,
         support="priority", sort_order=3, api_rate_per_second=100,
         database_placement="shared_database",
         allowances={"api_calls": 5_000_000, "storage_gb": 100, "compute_hours": 750,
                     "bandwidth_gb": 500}),
    dict(code="enterprise", name="Enterprise", price_cents=49900, max_databases=None,
         support="24/7 phone", sort_order=4, api_rate_per_second=500,
         database_placement="dedicated",
         allowances={"api_calls": None, "storage_gb": 1000, "compute_hours": 5000,
                     "bandwidth_gb": 5000}),
    dict(code="custom", name="Custom", price_cents=0, max_databases=None, support="dedicated",
         is_public=False, is_custom=True, sort_order=5, api_rate_per_second=None,
         database_placement="dedicated",
         allowances={"api_calls": None, "storage_gb": None, "compute_hours": None,
                     "bandwidth_gb": None}),
]
