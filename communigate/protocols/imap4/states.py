"""IMAP session states and the error a command handler raises."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from communigate.portal.avatars import MailboxLocation
    from communigate.protocols.imap4.reader import Argument
    from communigate.protocols.imap4.selected import SelectedMailbox


class State(enum.Enum):
    """RFC 3501 §3 states."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class CommandFailed(Exception):
    """A command that ends with ``NO`` (or ``BAD``) and this text."""

    def __init__(self, text: str, status: str = "NO") -> None:
        super().__init__(text)
        self.status = status


ANY = frozenset(State) - {State.LOGOUT}
AUTHENTICATED = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
NOT_AUTHENTICATED = frozenset({State.NOT_AUTHENTICATED})


class SessionBase:
    """What the command mixins use of a session; the server provides it."""

    account: Any
    factory: Any
    log: Any
    connected: int
    busy: bool
    _resume: Callable[[], None]
    selected: SelectedMailbox | None
    detach_selected: Callable[[], SelectedMailbox | None]
    state: State
    send: Callable[[bytes], None]
    write: Callable[[bytes], None]
    tagged: Callable[[str, str, str], None]
    updates: Callable[..., None]
    text: Callable[[Argument], bytes]
    arguments: Callable[..., None]
    locate: Callable[[Argument], MailboxLocation]
    require: Callable[[MailboxLocation, str], str]
    flag_allowed: Callable[[str, str], bool]
