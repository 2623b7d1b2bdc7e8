"""Helpers shared by the driver tests: the operation loop in miniature."""
from provisioning.drivers.base import ClusterSpec, Driver


def converge(driver: Driver, handle: str, spec: ClusterSpec | None, *, limit: int = 20,
             between=None) -> list[str]:
    """poll -> plan -> apply the first step, until the plan is empty (as the operation
    runner does). `between` runs after each apply (a fake operator catching up).
    Returns the steps applied, as "action:node"."""
    applied = []
    for _ in range(limit):
        steps = driver.plan(driver.poll(handle), spec)
        if not steps:
            return applied
        driver.apply(handle, steps[0], spec)
        applied.append(f"{steps[0].action}:{steps[0].node}")
        if between:
            between()
    raise AssertionError(f"no convergence after {limit} steps: {applied}")
