"""FTP commands on files and directories (RFC 959 §4.1, RFC 3659).

Every path is resolved against the working directory by
:func:`.parser.resolve` and handed to the account's
:class:`~communigate.portal.filesession.IFileSession`, which checks the
rights; its refusals become 550 (553, 452) replies in :mod:`.session`.
"""

from __future__ import annotations

from communigate.portal.filesession import FileError, Problem
from communigate.protocols.ftp import listing, parser
from communigate.protocols.ftp.parser import CommandError, reply
from communigate.protocols.ftp.session import FTPSession


class FileCommands(FTPSession):
    """Mixed into the FTP server."""

    # -- navigation and file commands ----------------------------------------------------

    def ftp_PWD(self, argument: str) -> None:
        """RFC 959 257 with the path quoted."""
        self.send(
            reply(257, f"{parser.quote_path(parser.show(self.cwd))} is the current directory")
        )

    def ftp_CWD(self, argument: str) -> None:
        """Change to a readable directory."""
        path = self._path(argument)
        self._session().check_directory(path)
        self.cwd = path
        self.send(reply(250, f"directory changed to {parser.show(path)}"))

    def ftp_CDUP(self, argument: str) -> None:
        """The parent directory."""
        self.ftp_CWD("..")

    def ftp_MKD(self, argument: str) -> None:
        """Make a directory."""
        path = self._path(argument)
        self._session().make_directory(path)
        self.send(reply(257, f"{parser.quote_path(parser.show(path))} created"))

    def ftp_RMD(self, argument: str) -> None:
        """Remove an empty directory."""
        self._session().remove_directory(self._path(argument))
        self.send(reply(250, "directory removed"))

    def ftp_DELE(self, argument: str) -> None:
        """Delete a file."""
        self._session().remove_file(self._path(argument))
        self.send(reply(250, "file deleted"))

    def ftp_RNFR(self, argument: str) -> None:
        """The file to rename (RNTO must follow at once)."""
        path = self._path(argument)
        self._session().entry(path)
        self.rename_from = path
        self.send(reply(350, "ready for RNTO"))

    def ftp_RNTO(self, argument: str) -> None:
        """Rename the RNFR file."""
        if self.renaming is None:
            raise CommandError(503, "send RNFR first")
        self._session().rename(self.renaming, self._path(argument))
        self.send(reply(250, "renamed"))

    def ftp_SIZE(self, argument: str) -> None:
        """RFC 3659 §4."""
        entry = self._session().entry(self._path(argument))
        if entry.directory:
            raise FileError(Problem.IS_DIRECTORY, "not a plain file")
        self.send(reply(213, str(entry.size)))

    def ftp_MDTM(self, argument: str) -> None:
        """RFC 3659 §3."""
        entry = self._session().entry(self._path(argument))
        self.send(reply(213, listing.mdtm(entry)))

    def ftp_MLST(self, argument: str) -> None:
        """RFC 3659 §7: one file's facts on the control connection."""
        path = self._path(argument)
        entry = self._session().entry(path)
        line = listing.facts(entry).decode("ascii") + " " + parser.show(path)
        self.send(parser.multiline(250, f"listing {parser.show(path)}", [line], "End"))
