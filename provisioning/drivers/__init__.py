"""Provider drivers behind one interface (see base.py). `driver_for` picks one by name;
drivers are imported lazily so an SDK is only loaded when its provider is used."""
from functools import cache
from importlib import import_module

from .base import Driver

DRIVERS = {
    "local": "provisioning.drivers.local:LocalDriver",
    "kubernetes": "provisioning.drivers.kubernetes:KubernetesDriver",
    "aws": "provisioning.drivers.aws:AwsDriver",
}


@cache
def driver_for(provider: str) -> Driver:
    try:
        target = DRIVERS[provider]
    except KeyError:
        raise LookupError(f"Unknown provider {provider!r}; choose one of {sorted(DRIVERS)}.") from None
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)()
