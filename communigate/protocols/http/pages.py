"""The WebUser pages as HTML (pure code: values in, bytes out).

Small, accessible pages that need no JavaScript: a language, a title, one
``<main>`` landmark, labelled fields, real buttons, visible focus and a
layout that reflows on a narrow screen.  Every value is escaped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape

from communigate.portal.filesession import Entry
from communigate.protocols.http.paths import href

#: What every failed login shows, whatever failed (spec §4).
FAILURE_TEXT = "Incorrect password or account name."

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1b1f24}
main{max-width:42rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;
border:1px solid #d0d4da;border-radius:.5rem}
h1{font-size:1.5rem;margin-top:0}label{display:block;margin-top:1rem;font-weight:600}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;
font-size:1rem;border:1px solid #6b7280;border-radius:.25rem}
button{margin-top:1.25rem;padding:.5rem 1.25rem;font-size:1rem;border:0;border-radius:.25rem;
background:#1d4ed8;color:#fff;cursor:pointer}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.error{color:#991b1b;background:#fee2e2;padding:.5rem;border-radius:.25rem}
.note{color:#4b5563}table{border-collapse:collapse;width:100%;margin-top:.5rem}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e5e7eb}
td.size{text-align:right}code{word-break:break-all}
"""


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    ).encode()


def login_page(domain: str, token: str, failed: bool = False, insecure: bool = False) -> bytes:
    """The login form of ``domain``; ``failed`` adds the one failure text,
    ``insecure`` the advice to use HTTPS."""
    error = f'<p class="error" role="alert">{FAILURE_TEXT}</p>\n' if failed else ""
    advice = (
        '<p class="note">This connection is not encrypted: use HTTPS to log in.</p>\n'
        if insecure
        else ""
    )
    return _page(
        f"Log in to {domain}",
        f"<h1>Log in to {escape(domain)}</h1>\n{error}{advice}"
        '<form method="post" action="/login">\n'
        f'<input type="hidden" name="csrf" value="{escape(token)}">\n'
        '<label for="username">Account name</label>\n'
        '<input type="text" id="username" name="username" autocomplete="username" '
        'autocapitalize="none" spellcheck="false" required autofocus>\n'
        '<label for="password">Password</label>\n'
        '<input type="password" id="password" name="password" '
        'autocomplete="current-password" required>\n'
        '<button type="submit">Log in</button>\n</form>',
    )


def _size(entry: Entry) -> str:
    return "folder" if entry.directory else f"{entry.size:,} bytes"


def account_page(account: str, session_id: str, token: str, entries: Iterable[Entry]) -> bytes:
    """The page of a logged-in account: its name, session ID, the top of
    its File Storage and a logout button."""
    top = ("~" + account,)
    rows = "".join(
        f'<tr><td><a href="{escape(href((*top, entry.name), entry.directory))}">'
        f"{escape(entry.name)}{'/' if entry.directory else ''}</a></td>"
        f'<td class="size">{_size(entry)}</td>'
        f"<td>{time.strftime('%Y-%m-%d %H:%M', time.gmtime(entry.modified))} UTC</td></tr>\n"
        for entry in entries
    )
    table = (
        '<table>\n<caption class="note">Files at the top of your File Storage</caption>\n'
        '<tr><th scope="col">Name</th><th scope="col">Size</th>'
        f'<th scope="col">Modified</th></tr>\n{rows}</table>'
        if rows
        else '<p class="note">Your File Storage is empty.</p>'
    )
    return _page(
        f"{account}",
        f"<h1>{escape(account)}</h1>\n"
        f'<p>Session ID: <code id="session-id">{escape(session_id)}</code></p>\n'
        f'<h2>File Storage</h2>\n<p><a href="{escape(href(top, True))}">'
        f"{escape(href(top, True))}</a></p>\n{table}\n"
        '<form method="post" action="/logout">\n'
        f'<input type="hidden" name="csrf" value="{escape(token)}">\n'
        '<button type="submit">Log out</button>\n</form>',
    )


def listing_page(path: tuple[str, ...], entries: Iterable[Entry]) -> bytes:
    """A directory of File Storage, as links."""
    where = href(path, True)
    parent = (
        f'<li><a href="{escape(href(path[:-1], True))}">../</a></li>\n' if len(path) > 1 else ""
    )
    items = "".join(
        f'<li><a href="{escape(href((*path, entry.name), entry.directory))}">'
        f"{escape(entry.name)}{'/' if entry.directory else ''}</a> "
        f'<span class="note">{_size(entry)}</span></li>\n'
        for entry in entries
    )
    return _page(where, f"<h1>{escape(where)}</h1>\n<ul>\n{parent}{items}</ul>")


def message_page(title: str, text: str) -> bytes:
    """A short page for an HTTP error."""
    return _page(title, f"<h1>{escape(title)}</h1>\n<p>{escape(text)}</p>")
