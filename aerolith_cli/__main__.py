"""`aerolith` command line: argument parsing and exit codes.

Exit codes: 0 done, 1 the API refused or failed (or could not be reached), 2 wrong usage,
3 not logged in or the key was refused (401) or lacks the permission (403).
"""
import argparse
import sys

from . import commands
from .client import EXIT_API, EXIT_OK, CliError

EPILOG = ("Log in once with an API key from the portal (API keys page); it is kept in your "
          "config directory, readable only by you. AEROLITH_URL and AEROLITH_API_KEY override "
          "it. Add --json to any command for machine-readable output.")


def _id(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"'{raw}' is not an id (a positive integer)")
    return value


def _count(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{raw}' is not a number of nodes") from None


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the command; SUPPRESS keeps the sub-parser from
    # overwriting a --json given before it.
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                           help="print the API's JSON instead of a table")
    parser = argparse.ArgumentParser(prog="aerolith", description="Aerolith Cloud from the "
                                     "command line.", epilog=EPILOG)
    parser.add_argument("--json", action="store_true", default=False,
                        help="print the API's JSON instead of a table")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent, name, handler, help_text):
        p = parent.add_parser(name, parents=[json_flag], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command(sub, "login", commands.login, "check an API key and store it")
    p.add_argument("--url", required=True,
                   help="your organisation's address, e.g. http://acme.aerolith.localhost:8000")
    p.add_argument("--key", help="the API key (ak_…); asked for, hidden, when omitted")
    command(sub, "logout", commands.logout, "forget the stored key")
    command(sub, "usage", commands.usage, "this period's usage per meter")
    p = command(sub, "invoices", commands.invoices, "list invoices, or download one as PDF")
    p.add_argument("--pdf", metavar="NUMBER", help="download this invoice's PDF")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write the PDF (default NUMBER.pdf; - for stdout)")

    groups = {name: sub.add_parser(name, help=text, description=text).add_subparsers(
                  dest="action", required=True, metavar="ACTION")
              for name, text in (("databases", "list, create or delete databases"),
                                 ("clusters", "list or scale dedicated clusters"),
                                 ("keys", "list, create or revoke API keys"))}
    command(groups["databases"], "list", commands.databases_list, "list databases")
    p = command(groups["databases"], "create", commands.databases_create,
                "create a database and print its URI with the password, once")
    p.add_argument("name", help="lowercase letters, digits and underscores")
    p.add_argument("--cluster", type=_id, metavar="ID", help="a dedicated cluster to place it on")
    p = command(groups["databases"], "delete", commands.databases_delete,
                "delete a database and all its data")
    p.add_argument("id", type=_id)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    command(groups["clusters"], "list", commands.clusters_list, "list dedicated clusters")
    p = command(groups["clusters"], "scale", commands.clusters_scale,
                "scale a cluster to N nodes (asynchronous)")
    p.add_argument("id", type=_id)
    p.add_argument("nodes", type=_count, metavar="N", help="nodes, the primary included")
    command(groups["keys"], "list", commands.keys_list, "list API keys")
    p = command(groups["keys"], "create", commands.keys_create,
                "create an API key and print its secret, once")
    p.add_argument("name")
    p.add_argument("--scope", action="append", metavar="SCOPE",
                   help="repeat for several: read, databases:write, usage:write, "
                        "billing:write, api_keys:write, … (default: read)")
    p = command(groups["keys"], "revoke", commands.keys_revoke, "revoke an API key")
    p.add_argument("id", type=_id)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on wrong usage
    try:
        args.handler(args)
    except CliError as error:
        print(f"aerolith: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("aerolith: interrupted", file=sys.stderr)
        return EXIT_API
    except BrokenPipeError:  # `aerolith invoices | head`
        return EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
