"""``twisted.cred.strcred`` checker factories, so any twistd application can
use communigate's checkers (``--auth communigate-…``).  The plugin module
``twisted/plugins/communigate_cred.py`` only instantiates these; imports
happen in ``generateChecker``.

* ``communigate-internal:/base/dir`` — accounts of a base directory (names,
  Router, CommuniGate passwords), avatar ID ``name@domain``;
* ``communigate-pam[:service]`` — the OS password through PAM;
* ``communigate-external:/path/to/helper args`` — an External
  Authentication helper (spec §3), started on first use.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import ICheckerFactory
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(ICheckerFactory, IPlugin)
class CheckerFactory:
    """One ``--auth communigate-NAME:ARGS`` kind."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, name: str, help_text: str, arg_help: str) -> None:
        self.authType = f"communigate-{name}"
        self.authHelp = help_text
        self.argStringFormat = arg_help

    def generateChecker(self, argstring: str = "") -> Any:
        """Build the checker (heavy imports happen only here)."""
        from twisted.internet import reactor

        kind = self.authType.removeprefix("communigate-")
        if kind == "internal":
            from pathlib import Path

            from communigate.cred.checkers.internal import InternalPassword
            from communigate.portal.accounts import AccountResolver
            from communigate.portal.checker import AccountChecker
            from communigate.store.files import FileDirectory

            pool = reactor.getThreadPool()  # type: ignore[attr-defined]
            directory = FileDirectory(Path(argstring))
            return AccountChecker(
                AccountResolver(directory), [InternalPassword(reactor, pool)], reactor, pool
            )
        if kind == "pam":
            from communigate.cred.checkers.system import PAMChecker

            return PAMChecker(reactor, reactor.getThreadPool(), argstring or "login")  # type: ignore[attr-defined]
        from communigate.cred.checkers.external import ExternalChecker

        return ExternalChecker(reactor, argstring)
