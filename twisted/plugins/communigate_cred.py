"""communigate's credential checkers for ``twisted.cred.strcred``."""

from communigate.cred.plugins import CheckerFactory

internal = CheckerFactory(
    "internal",
    "Accounts of a communigate base directory (names, Router, passwords).",
    "The base directory, e.g. /var/lib/communigate",
)
pam = CheckerFactory("pam", "The OS password through PAM.", "The PAM service name (default: login)")
external = CheckerFactory(
    "external",
    "An External Authentication helper speaking CommuniGate's protocol.",
    "The helper program and its arguments",
)
