"""What each command does: call the API, then print a table for people or the raw JSON
(`--json`) for scripts. Errors are raised as CliError and printed by __main__."""
import getpass
import json
import sys
from pathlib import Path
from urllib.parse import quote

from . import config
from .client import EXIT_AUTH, EXIT_USAGE, Api, CliError, normalise_url


def _api() -> Api:
    credentials = config.load()
    if credentials is None:
        raise CliError("Not logged in. Run `aerolith login --url "
                       "http://<your-organisation>.aerolith.localhost:8000` first.", EXIT_AUTH)
    return Api(credentials.url, credentials.key)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _table(rows: list[dict], columns: list[tuple[str, str]], empty: str) -> None:
    if not rows:
        print(empty)
        return
    cells = [[str(row.get(key, "") if row.get(key) is not None else "–") for key, _ in columns]
             for row in rows]
    widths = [max(len(title), *(len(r[i]) for r in cells)) for i, (_, title) in enumerate(columns)]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def money(cents: int | None, currency: str = "") -> str:
    """Integer cents as text, without going through floats."""
    if cents is None:
        return "–"
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(int(cents)), 100)
    return f"{sign}{units:,}.{rest:02d} {currency.upper()}".strip()


def _segment(value) -> str:
    return quote(str(value), safe="")


# --- session --------------------------------------------------------------------------

def login(args) -> None:
    url = normalise_url(args.url)
    key = args.key
    if not key:
        if not sys.stdin.isatty():
            raise CliError("Give the key with --key (no terminal to ask for it).", EXIT_USAGE)
        key = getpass.getpass("API key (ak_…, input hidden): ").strip()
    if not key:
        raise CliError("No API key given; create one in the portal under API keys.", EXIT_USAGE)
    with Api(url, key) as api:
        tenant = api.get("/tenant")
    path = config.save(config.Credentials(url=url, key=key))
    if args.json:
        _print_json(tenant)
        return
    plan = (tenant.get("plan") or {}).get("name", "no plan")
    print(f"Logged in to {tenant['name']} ({tenant['slug']}, {plan}) at {url}.")
    print(f"The key is stored in {path}, readable only by you.")


def logout(args) -> None:
    removed = config.delete()
    if args.json:
        _print_json({"logged_out": removed, "path": str(config.config_path())})
    elif removed:
        print(f"Logged out: removed {config.config_path()}.")
    else:
        print("Not logged in; nothing to remove.")


# --- usage and invoices ---------------------------------------------------------------

def usage(args) -> None:
    with _api() as api:
        body = api.get("/usage")
    if args.json:
        return _print_json(body)
    print(f"Plan {body['plan']} ({money(body['plan_price_cents'])} per period), "
          f"period {body['period_start']} → {body['period_end']}, as of {body['as_of']}")
    _table([{**m, "overage_amount": money(m["overage_amount_cents"]),
             "included": m["included"] if m["included"] is not None else "unlimited"}
            for m in body["meters"]],
           [("meter", "METER"), ("unit", "UNIT"), ("used", "USED"), ("included", "INCLUDED"),
            ("overage", "OVERAGE"), ("overage_amount", "OVERAGE COST"),
            ("projected", "PROJECTED")],
           "No meters.")
    print(f"Projected total for the period: {money(body['projected_total_cents'])}")


def invoices(args) -> None:
    with _api() as api:
        if args.pdf:
            return _invoice_pdf(api, args)
        items = api.paginate("/invoices")
    if args.json:
        return _print_json(items)
    _table([{**i, "period": f"{(i['period_start'] or '')[:10]} → {(i['period_end'] or '')[:10]}",
             "total": money(i["total_cents"], i["currency"]),
             "due": money(i["amount_due_cents"], i["currency"])} for i in items],
           [("number", "NUMBER"), ("status", "STATUS"), ("period", "PERIOD"),
            ("total", "TOTAL"), ("due", "DUE")],
           "No invoices yet.")


def _invoice_pdf(api: Api, args) -> None:
    response = api.request("GET", f"/invoices/{_segment(args.pdf)}/pdf",
                           headers={"Accept": "application/pdf, application/problem+json"})
    content = response.content
    if not content.startswith(b"%PDF"):
        raise CliError("The server did not answer a PDF; try again later.")
    if args.output == "-":
        sys.stdout.buffer.write(content)
        return
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.pdf)
    path = Path(args.output or f"{safe_name}.pdf")
    path.write_bytes(content)
    if args.json:
        _print_json({"number": args.pdf, "file": str(path), "bytes": len(content)})
    else:
        print(f"Saved invoice {args.pdf} to {path} ({len(content):,} bytes).")


# --- databases ------------------------------------------------------------------------

def databases_list(args) -> None:
    with _api() as api:
        items = api.paginate("/databases")
    if args.json:
        return _print_json(items)
    _table(items, [("id", "ID"), ("name", "NAME"), ("state", "STATE"),
                   ("placement", "PLACEMENT"), ("uri", "URI (no password)")],
           "No databases yet: create one with `aerolith databases create NAME`.")


def databases_create(args) -> None:
    body = {"name": args.name}
    if args.cluster is not None:
        body["cluster_id"] = args.cluster
    with _api() as api:
        database = api.post("/databases", body)
    if args.json:
        return _print_json(database)
    print(f"Created database {database['name']} (id {database['id']}, {database['placement']}).")
    print("Connection URI with its password. It is shown only this once: store it now, "
          "e.g. in your password manager.")
    print(f"  {database['uri']}")


def databases_delete(args) -> None:
    with _api() as api:
        database = api.get(f"/databases/{args.id}")
        if not args.yes:
            _confirm(f"Delete database '{database['name']}' (id {args.id}) and all its data? "
                     "This cannot be undone.")
        api.delete(f"/databases/{args.id}")
    if args.json:
        _print_json({"deleted": args.id, "name": database["name"]})
    else:
        print(f"Deleted database {database['name']} (id {args.id}).")


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise CliError("Refusing to delete without confirmation: pass --yes.", EXIT_USAGE)
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise CliError("Nothing deleted.", EXIT_USAGE)


# --- clusters -------------------------------------------------------------------------

def _cluster_row(cluster: dict) -> dict:
    operation = cluster.get("operation")
    return {**cluster, "operation": f"{operation['kind']} {operation['state']}" if operation else None}


def clusters_list(args) -> None:
    with _api() as api:
        items = api.paginate("/clusters")
    if args.json:
        return _print_json(items)
    _table([_cluster_row(c) for c in items],
           [("id", "ID"), ("name", "NAME"), ("provider", "PROVIDER"), ("region", "REGION"),
            ("size", "SIZE"), ("node_count", "NODES"), ("health", "HEALTH"),
            ("operation", "OPERATION")],
           "No dedicated clusters.")


def clusters_scale(args) -> None:
    with _api() as api:
        body = api.patch(f"/clusters/{args.id}", {"node_count": args.nodes})
    if args.json:
        return _print_json(body)
    operation = body.get("operation") or {}
    print(f"Scaling cluster {body['cluster']['name']} to {args.nodes} nodes: operation "
          f"{operation.get('id')} is {operation.get('state')}. Follow it with "
          "`aerolith clusters list`.")


# --- API keys -------------------------------------------------------------------------

def keys_list(args) -> None:
    with _api() as api:
        items = api.paginate("/api-keys")
    if args.json:
        return _print_json(items)
    _table([{**k, "scopes": ",".join(k["scopes"]), "active": "yes" if k["active"] else "revoked"}
            for k in items],
           [("id", "ID"), ("name", "NAME"), ("prefix", "PREFIX"), ("scopes", "SCOPES"),
            ("active", "ACTIVE"), ("last_used_at", "LAST USED")],
           "No API keys.")


def keys_create(args) -> None:
    with _api() as api:
        key = api.post("/api-keys", {"name": args.name, "scopes": args.scope or ["read"]})
    if args.json:
        return _print_json(key)
    print(f"Created key {key['name']} (id {key['id']}, scopes {', '.join(key['scopes'])}).")
    print("Its secret is shown only this once: store it now.")
    print(f"  {key['secret']}")


def keys_revoke(args) -> None:
    with _api() as api:
        api.delete(f"/api-keys/{args.id}")
    if args.json:
        _print_json({"revoked": args.id})
    else:
        print(f"Revoked key {args.id}; it no longer authenticates.")
