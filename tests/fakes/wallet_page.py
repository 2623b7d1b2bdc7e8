"""The "test wallet" pages the chain fakes serve at /wallet (test mode only): plain
server-rendered HTML forms, no JavaScript, so a person trying the portal in test mode can
pay a quote from the browser. Shared by tests/fakes/solana_rpc.py and trongrid.py."""
from html import escape
from urllib.parse import parse_qs

STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}"
         "input,select{font:inherit;padding:.3rem;width:100%;box-sizing:border-box;margin:.2rem 0 .8rem}"
         "button{font:inherit;padding:.4rem 1rem;margin-right:.5rem}.ok{color:#0a6b2d}.error{color:#b00020}"
         "code{word-break:break-all}.muted{color:#666}")


def form_fields(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (or query string) as field -> last value."""
    try:
        text = body.decode() if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        return {}
    return {key: values[-1].strip() for key, values in parse_qs(text, keep_blank_values=True).items()}


def render(title: str, intro: str, form: str, message: str = "", ok: bool = True) -> bytes:
    """A whole page; `form` is trusted HTML built with field(), `message` is escaped."""
    note = f'<p class="{"ok" if ok else "error"}" id="message">{escape(message)}</p>' if message else ""
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{note}"
            f"<p class=\"muted\">{intro}</p>{form}</body></html>").encode()


def field(label: str, name: str, value: str = "", *, choices: tuple[str, ...] = ()) -> str:
    if choices:
        options = "".join(f'<option value="{escape(c)}"{" selected" if c == value else ""}>{escape(c.upper())}'
                          "</option>" for c in choices)
        return f'<label>{escape(label)}<select name="{name}">{options}</select></label>'
    return f'<label>{escape(label)}<input name="{name}" value="{escape(value)}"></label>'


def send_html(handler, status: int, page: bytes) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)
    except (BrokenPipeError, ConnectionResetError):
        pass
