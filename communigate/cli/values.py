"""``Key=Value`` arguments in CommuniGate's syntax."""

from __future__ import annotations

from collections.abc import Sequence

from communigate.cred import passwords
from communigate.store import settingsformat
from communigate.store.settingsformat import SettingsSyntaxError, Value


class ValueSyntaxError(ValueError):
    """A ``Key=Value`` argument that cannot be read."""


def parse_assignments(arguments: Sequence[str]) -> dict[str, Value | None]:
    """``Key=Value`` pairs; ``Key=`` maps to None (remove the setting).

    A value that starts with ``{`` or ``$`` under the key ``Password`` is
    taken as an imported hash when it is one, else stored as ``{PLAIN}``.
    Arguments must be UTF-8 (settings files are).
    """
    changes: dict[str, Value | None] = {}
    for argument in arguments:
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueSyntaxError("arguments must be valid UTF-8") from None
        key, sep, text = argument.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").replace("-", "").isalnum():
            raise ValueSyntaxError(f"expected Key=Value, got {argument!r}")
        if key == "Password":
            changes[key] = _password(text) if text else None
            continue
        if not text.strip():
            changes[key] = None
            continue
        try:
            changes[key] = settingsformat.loads(text)
        except SettingsSyntaxError as error:
            raise ValueSyntaxError(f"malformed value for {key}: {error}") from None
    return changes


#: How ``account settings`` shows a password; never taken as one.
HIDDEN_MARK = "(set)"


def _password(text: str) -> str:
    if text.strip() == HIDDEN_MARK:
        raise ValueSyntaxError(
            f"Password={HIDDEN_MARK} is how a set password is shown; give the password itself"
        )
    if passwords.is_one_way(text) or not text.startswith(("{", "$")):
        return text
    return "{PLAIN}" + text
