"""Stripe's form encoding: `metadata[invoice]=AER-1`, `expand[0]=latest_charge` (or `expand[]=…`)."""
import re
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[]+)((?:\[[^\]]*\])*)$")


def parse_form(text: str) -> dict:
    root: dict = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        match = _KEY.match(key)
        if not match:
            root[key] = value
            continue
        parts = [match.group(1)] + re.findall(r"\[([^\]]*)\]", match.group(2))
        node = root
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        last = parts[-1]
        node[last if last != "" else str(len(node))] = value  # `a[]=x` appends
    return _listify(root, "")


def _listify(node, name):
    if not isinstance(node, dict):
        return node
    items = {key: _listify(value, key) for key, value in node.items()}
    if name != "metadata" and items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items
