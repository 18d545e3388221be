"""Presence subscription states of RFC 6121 Appendix A, as tables.

The state a user's server keeps for one contact is one of nine
(:class:`SubState`, Appendix A.1).  Each presence subscription stanza moves
it by a fixed table: :func:`outbound` for the stanzas the user sends
(Appendix A.2: whether the server routes the stanza to the contact) and
:func:`inbound` for those arriving for the user (Appendix A.3: whether the
server delivers it to the user).  A state change means a roster push; "no
state change" returns the state it was given.

The roster stores a state as its wire form (RFC 6121 §2.1.2.5): the
``subscription`` attribute, ``ask='subscribe'`` for a pending outbound
request, and a server-side flag for a pending inbound one
(:func:`to_roster`, :func:`from_roster`).

Pure tables, no I/O: the roster module and the presence routing both use
them.
"""

from __future__ import annotations

import enum
from typing import Literal

Kind = Literal["subscribe", "subscribed", "unsubscribe", "unsubscribed"]

#: The four presence types this module knows (RFC 6121 §3).
KINDS: frozenset[str] = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))


class SubState(enum.Enum):
    """The nine subscription states of RFC 6121 Appendix A.1, named as
    there.  "To" means the user receives the contact's presence, "From"
    that the contact receives the user's; "Pending Out" is the user's
    unanswered request, "Pending In" the contact's."""

    NONE = "None"
    NONE_PENDING_OUT = "None + Pending Out"
    NONE_PENDING_IN = "None + Pending In"
    NONE_PENDING_OUT_IN = "None + Pending Out/In"
    TO = "To"
    TO_PENDING_IN = "To + Pending In"
    FROM = "From"
    FROM_PENDING_OUT = "From + Pending Out"
    BOTH = "Both"


_N = SubState.NONE
_NO = SubState.NONE_PENDING_OUT
_NI = SubState.NONE_PENDING_IN
_NOI = SubState.NONE_PENDING_OUT_IN
_T = SubState.TO
_TI = SubState.TO_PENDING_IN
_F = SubState.FROM
_FO = SubState.FROM_PENDING_OUT
_B = SubState.BOTH

# Each row: existing state -> (new state, routed/delivered).  Rows that
# say "no state change" in the RFC keep the existing state.
_OUTBOUND: dict[str, dict[SubState, tuple[SubState, bool]]] = {
    # A.2.1: a subscription request is always routed.
    "subscribe": {
        _N: (_NO, True),
        _NO: (_NO, True),
        _NI: (_NOI, True),
        _NOI: (_NOI, True),
        _T: (_T, True),
        _TI: (_TI, True),
        _F: (_FO, True),
        _FO: (_FO, True),
        _B: (_B, True),
    },
    # A.2.2: cancelling one's own subscription is always routed.
    "unsubscribe": {
        _N: (_N, True),
        _NO: (_N, True),
        _NI: (_NI, True),
        _NOI: (_NI, True),
        _T: (_N, True),
        _TI: (_NI, True),
        _F: (_F, True),
        _FO: (_F, True),
        _B: (_F, True),
    },
    # A.2.3: approving is routed only if there is a request to approve
    # (otherwise §3.4 lets a server keep it as a pre-approval).
    "subscribed": {
        _N: (_N, False),
        _NO: (_NO, False),
        _NI: (_F, True),
        _NOI: (_FO, True),
        _T: (_T, False),
        _TI: (_B, True),
        _F: (_F, False),
        _FO: (_FO, False),
        _B: (_B, False),
    },
    # A.2.4: denying or cancelling the contact's subscription.
    "unsubscribed": {
        _N: (_N, False),
        _NO: (_NO, False),
        _NI: (_N, True),
        _NOI: (_NO, True),
        _T: (_T, False),
        _TI: (_T, True),
        _F: (_N, True),
        _FO: (_NO, True),
        _B: (_T, True),
    },
}

_INBOUND: dict[str, dict[SubState, tuple[SubState, bool]]] = {
    # A.3.1: with a subscription from the contact already in place the
    # request is not delivered; the server answers it (see auto_subscribed).
    "subscribe": {
        _N: (_NI, True),
        _NO: (_NOI, True),
        _NI: (_NI, False),
        _NOI: (_NOI, False),
        _T: (_TI, True),
        _TI: (_TI, False),
        _F: (_F, False),
        _FO: (_FO, False),
        _B: (_B, False),
    },
    # A.3.2
    "unsubscribe": {
        _N: (_N, False),
        _NO: (_NO, False),
        _NI: (_N, True),
        _NOI: (_NO, True),
        _T: (_T, False),
        _TI: (_T, True),
        _F: (_N, True),
        _FO: (_NO, True),
        _B: (_T, True),
    },
    # A.3.3: an approval counts only for a request the user made.
    "subscribed": {
        _N: (_N, False),
        _NO: (_T, True),
        _NI: (_NI, False),
        _NOI: (_TI, True),
        _T: (_T, False),
        _TI: (_TI, False),
        _F: (_F, False),
        _FO: (_B, True),
        _B: (_B, False),
    },
    # A.3.4
    "unsubscribed": {
        _N: (_N, False),
        _NO: (_N, True),
        _NI: (_NI, False),
        _NOI: (_NI, True),
        _T: (_N, True),
        _TI: (_NI, True),
        _F: (_F, False),
        _FO: (_F, True),
        _B: (_F, True),
    },
}


def _row(
    table: dict[str, dict[SubState, tuple[SubState, bool]]], state: SubState, kind: str
) -> tuple[SubState, bool]:
    try:
        return table[kind][state]
    except KeyError:
        raise ValueError(f"not a subscription presence type: {kind!r}") from None


def outbound(state: SubState, kind: str) -> tuple[SubState, bool]:
    """The user sends a ``kind`` presence to a contact in ``state``: the new
    state and whether the stanza is routed to the contact (RFC 6121
    Appendix A.2).  ``ValueError`` for a type that is no subscription."""
    return _row(_OUTBOUND, state, kind)


def inbound(state: SubState, kind: str) -> tuple[SubState, bool]:
    """A ``kind`` presence arrives from a contact in ``state``: the new
    state and whether it is delivered to the user (RFC 6121 Appendix A.3).
    ``ValueError`` for a type that is no subscription."""
    return _row(_INBOUND, state, kind)


def auto_subscribed(state: SubState) -> bool:
    """Whether an inbound ``subscribe`` in ``state`` is answered by the
    server with ``subscribed`` on the user's behalf: the contact already
    has a subscription (RFC 6121 §3.1.3 and the starred rows of A.3.1)."""
    return state in (_F, _FO, _B)


def preapproves(state: SubState) -> bool:
    """Whether an outbound ``subscribed`` in ``state`` is a pre-approval
    (RFC 6121 §3.4): there is no request to approve and no subscription
    from the contact yet, so a server that supports pre-approval records it
    instead of routing the stanza."""
    return state in (_N, _NO, _T)


# (subscription attribute, ask='subscribe', pending in) for each state.
_ROSTER: dict[SubState, tuple[str, bool, bool]] = {
    _N: ("none", False, False),
    _NO: ("none", True, False),
    _NI: ("none", False, True),
    _NOI: ("none", True, True),
    _T: ("to", False, False),
    _TI: ("to", False, True),
    _F: ("from", False, False),
    _FO: ("from", True, False),
    _B: ("both", False, False),
}
_FROM_ROSTER = {value: state for state, value in _ROSTER.items()}


def to_roster(state: SubState) -> tuple[str, bool, bool]:
    """A state as stored in a roster item (RFC 6121 §2.1.2.5): the
    ``subscription`` attribute (``none``, ``to``, ``from``, ``both``),
    whether ``ask='subscribe'`` is shown, whether a request from the
    contact is pending."""
    return _ROSTER[state]


def from_roster(subscription: str, ask: bool, pending_in: bool) -> SubState:
    """The state a roster item stores.  Combinations no state has (``to``
    with ``ask``, ``from`` with a pending request, ``both`` with either)
    drop the flag that cannot hold; ``ValueError`` for an unknown
    ``subscription``."""
    if subscription not in ("none", "to", "from", "both"):
        raise ValueError(f"not a subscription value: {subscription!r}")
    if subscription in ("to", "both"):
        ask = False
    if subscription in ("from", "both"):
        pending_in = False
    return _FROM_ROSTER[(subscription, ask, pending_in)]


def has_to(state: SubState) -> bool:
    """Whether the user receives the contact's presence ("To" or "Both")."""
    return state in (_T, _TI, _B)


def has_from(state: SubState) -> bool:
    """Whether the contact receives the user's presence ("From" or "Both")."""
    return state in (_F, _FO, _B)
