"""What billing asks of the rest of the product when a tenant's standing changes.

Billing decides (suspend, reactivate, cancel, fall back to a smaller plan); the provisioning
app carries it out on real databases by registering a hook at start-up
(`enforcement.register(...)` in its AppConfig.ready). Until a hook is registered there is
nothing to enforce: no customer databases exist yet, so `databases_in_use` is zero.
"""
from typing import Protocol


class EnforcementHook(Protocol):
    def databases_in_use(self, tenant) -> int: ...
    def plan_applied(self, tenant, plan) -> None:
        """Databases above the plan's limits become read-only; nothing is deleted."""
    def suspended(self, tenant) -> None:
        """Every database of the tenant refuses writes."""
    def reactivated(self, tenant) -> None:
        """Full service again."""
    def cancelled(self, tenant) -> None:
        """Connections are refused; data is kept."""


_hooks: list[EnforcementHook] = []


def register(hook: EnforcementHook) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


def unregister(hook: EnforcementHook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def databases_in_use(tenant) -> int:
    return sum(hook.databases_in_use(tenant) for hook in _hooks)


def notify(event: str, tenant, *args) -> None:
    """Call `event` ("plan_applied", "suspended", "reactivated", "cancelled") on every hook."""
    for hook in _hooks:
        getattr(hook, event)(tenant, *args)
