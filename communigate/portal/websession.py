"""The avatar a WebUser (HTTP) login opens: who logged in, and their files.

A web session (:mod:`communigate.protocols.http.sessions`) keeps this avatar
for as long as it lives; its pages show the account's name and its File
Storage through the same :class:`~communigate.portal.filesession.FileSession`
FTP uses, so the rights, privacy and quota are the same everywhere.

Access: logging in over HTTP needs the service the checker maps the
protocol ``http`` to (:data:`communigate.portal.accounts.SERVICES`:
``WebMail``, CommuniGate's WebUser interface), capped by the domain's
``DomainAccessModes``.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface, implementer

from communigate.portal.filesession import FileSession
from communigate.portal.sessions import LiveSession
from communigate.store.directory import IDirectory


class IWebUser(Interface):
    """An account logged in through the WebUser interface."""

    account = Attribute("The account's full name, name@domain.")
    domain = Attribute("The account's domain.")
    name = Attribute("The account's name inside its domain.")

    def files() -> FileSession:
        """The account's File Storage, as FTP sees it."""


@implementer(IWebUser)
class WebUser(LiveSession):
    """The WebUser avatar of one account."""

    def __init__(self, directory: IDirectory, domain: str, name: str) -> None:
        self.directory = directory
        self.domain = domain
        self.name = name
        self.account = f"{name}@{domain}"
        self._files: FileSession | None = None

    def files(self) -> FileSession:
        """The File Storage view, made on first use."""
        if self._files is None:
            self._files = FileSession(self.directory, self.domain, self.name)
        return self._files
