"""Reading request parameters the way Stripe validates them (400 invalid_request_error + param)."""
from .errors import invalid


def allow(params: dict, *names: str) -> None:
    for name in params:
        if name not in names and name != "expand":
            raise invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")


def require(params: dict, *names: str) -> None:
    for name in names:
        if params.get(name) in (None, ""):
            raise invalid(f"Missing required param: {name}.", name, "parameter_missing")


def integer(params: dict, name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", name, "parameter_invalid_integer") from None


def boolean(params: dict, name: str) -> bool:
    value = params.get(name)
    if value in (None, "", "false", False):
        return False
    if value in ("true", True):
        return True
    raise invalid(f"Invalid boolean: {value}", name)


def merge_metadata(target: dict, params: dict) -> None:
    """Stripe's update semantics: keys are merged, `metadata[key]=` removes one, `metadata=` all."""
    if "metadata" not in params:
        return
    metadata = params["metadata"]
    if not isinstance(metadata, dict):
        target["metadata"] = {}
        return
    for key, value in metadata.items():
        if value == "":
            target["metadata"].pop(key, None)
        else:
            target["metadata"][key] = value
