"""RFC 6121 Appendix A: the subscription state tables, row by row."""

from __future__ import annotations

import pytest

from communigate.protocols.xmpp import subscriptions
from communigate.protocols.xmpp.subscriptions import (
    SubState,
    from_roster,
    inbound,
    outbound,
    to_roster,
)

STATES = [
    "None",
    "None + Pending Out",
    "None + Pending In",
    "None + Pending Out/In",
    "To",
    "To + Pending In",
    "From",
    "From + Pending Out",
    "Both",
]

# The tables of Appendix A as the RFC prints them, one string per row in the
# order of STATES: "yes"/"no", then the new state ("=" for no state change).
OUTBOUND = {
    "subscribe": [  # A.2.1
        "yes None + Pending Out",
        "yes =",
        "yes None + Pending Out/In",
        "yes =",
        "yes =",
        "yes =",
        "yes From + Pending Out",
        "yes =",
        "yes =",
    ],
    "unsubscribe": [  # A.2.2
        "yes =",
        "yes None",
        "yes =",
        "yes None + Pending In",
        "yes None",
        "yes None + Pending In",
        "yes =",
        "yes From",
        "yes From",
    ],
    "subscribed": [  # A.2.3
        "no =",
        "no =",
        "yes From",
        "yes From + Pending Out",
        "no =",
        "yes Both",
        "no =",
        "no =",
        "no =",
    ],
    "unsubscribed": [  # A.2.4
        "no =",
        "no =",
        "yes None",
        "yes None + Pending Out",
        "no =",
        "yes To",
        "yes None",
        "yes None + Pending Out",
        "yes To",
    ],
}
INBOUND = {
    "subscribe": [  # A.3.1
        "yes None + Pending In",
        "yes None + Pending Out/In",
        "no =",
        "no =",
        "yes To + Pending In",
        "no =",
        "no =",
        "no =",
        "no =",
    ],
    "unsubscribe": [  # A.3.2
        "no =",
        "no =",
        "yes None",
        "yes None + Pending Out",
        "no =",
        "yes To",
        "yes None",
        "yes None + Pending Out",
        "yes To",
    ],
    "subscribed": [  # A.3.3
        "no =",
        "yes To",
        "no =",
        "yes To + Pending In",
        "no =",
        "no =",
        "no =",
        "yes Both",
        "no =",
    ],
    "unsubscribed": [  # A.3.4
        "no =",
        "yes None",
        "no =",
        "yes None + Pending In",
        "yes None",
        "yes None + Pending In",
        "no =",
        "yes From",
        "yes From",
    ],
}


def _rows(tables: dict[str, list[str]]) -> list[tuple[str, str, bool, str]]:
    rows = []
    for kind, column in tables.items():
        for existing, row in zip(STATES, column, strict=True):
            passes, _, new = row.partition(" ")
            rows.append((kind, existing, passes == "yes", existing if new == "=" else new))
    return rows


def test_nine_states_named_as_in_the_rfc() -> None:
    """SubState has exactly the nine states of Appendix A.1, with their names."""
    assert [state.value for state in SubState] == STATES


@pytest.mark.parametrize(("kind", "existing", "routed", "new"), _rows(OUTBOUND))
def test_outbound_table(kind: str, existing: str, routed: bool, new: str) -> None:
    """Each row of Appendix A.2: new state and whether the stanza is routed."""
    assert outbound(SubState(existing), kind) == (SubState(new), routed)


@pytest.mark.parametrize(("kind", "existing", "delivered", "new"), _rows(INBOUND))
def test_inbound_table(kind: str, existing: str, delivered: bool, new: str) -> None:
    """Each row of Appendix A.3: new state and whether the stanza is delivered."""
    assert inbound(SubState(existing), kind) == (SubState(new), delivered)


def test_unknown_kind_is_refused() -> None:
    """A presence type that is no subscription type raises ValueError."""
    with pytest.raises(ValueError, match="probe"):
        outbound(SubState.NONE, "probe")
    with pytest.raises(ValueError, match="available"):
        inbound(SubState.NONE, "available")


def test_roster_form_round_trip() -> None:
    """Every state survives to_roster() then from_roster()."""
    for state in SubState:
        assert from_roster(*to_roster(state)) is state


def test_roster_form_values() -> None:
    """The subscription attribute and flags follow RFC 6121 §2.1.2.5."""
    assert to_roster(SubState.NONE_PENDING_OUT) == ("none", True, False)
    assert to_roster(SubState.NONE_PENDING_OUT_IN) == ("none", True, True)
    assert to_roster(SubState.TO_PENDING_IN) == ("to", False, True)
    assert to_roster(SubState.FROM) == ("from", False, False)
    assert to_roster(SubState.FROM_PENDING_OUT) == ("from", True, False)
    assert to_roster(SubState.BOTH) == ("both", False, False)


def test_from_roster_drops_impossible_flags() -> None:
    """Flags no state can hold with that subscription are ignored."""
    assert from_roster("both", True, True) is SubState.BOTH
    assert from_roster("to", True, False) is SubState.TO
    assert from_roster("from", False, True) is SubState.FROM
    with pytest.raises(ValueError, match="remove"):
        from_roster("remove", False, False)


def test_flags_of_states() -> None:
    """has_to/has_from follow the subscription attribute; auto_subscribed is has_from."""
    for state in SubState:
        subscription = to_roster(state)[0]
        assert subscriptions.has_to(state) == (subscription in ("to", "both"))
        assert subscriptions.has_from(state) == (subscription in ("from", "both"))
        assert subscriptions.auto_subscribed(state) == subscriptions.has_from(state)


def test_pre_approval_states() -> None:
    """Pre-approval (RFC 6121 §3.4) applies exactly where an outbound
    subscribed is neither routed nor already a subscription from the contact."""
    for state in SubState:
        _, routed = outbound(state, "subscribed")
        expected = not routed and not subscriptions.has_from(state)
        assert subscriptions.preapproves(state) == expected


def test_full_handshake() -> None:
    """A subscribe/subscribed exchange in both directions ends in Both on each side."""
    user, contact = SubState.NONE, SubState.NONE
    user, routed = outbound(user, "subscribe")
    assert routed
    contact, delivered = inbound(contact, "subscribe")
    assert delivered and contact is SubState.NONE_PENDING_IN
    contact, routed = outbound(contact, "subscribed")
    assert routed and contact is SubState.FROM
    user, delivered = inbound(user, "subscribed")
    assert delivered and user is SubState.TO
    contact, _ = outbound(contact, "subscribe")
    user, _ = inbound(user, "subscribe")
    user, _ = outbound(user, "subscribed")
    contact, _ = inbound(contact, "subscribed")
    assert user is SubState.BOTH and contact is SubState.BOTH
