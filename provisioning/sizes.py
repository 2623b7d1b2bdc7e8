"""Node sizes (SPEC §7 defaults) and what a running node of each size accrues in compute
hours: one compute-hour per two vCPUs per hour, so a small node accrues 1 an hour."""
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Size:
    code: str
    vcpus: int
    memory_gb: int

    @property
    def compute_hours_per_hour(self) -> Decimal:
        return Decimal(self.vcpus) / 2


SIZES = {s.code: s for s in (
    Size("small", 2, 4),
    Size("medium", 4, 16),
    Size("large", 8, 32),
    Size("xlarge", 16, 64),
)}
SIZE_CHOICES = [(code, f"{code} ({s.vcpus} vCPU / {s.memory_gb} GB)") for code, s in SIZES.items()]


def size_get(code: str) -> Size:
    try:
        return SIZES[code]
    except KeyError:
        raise LookupError(f"Unknown node size {code!r}; choose one of {', '.join(SIZES)}.") from None
