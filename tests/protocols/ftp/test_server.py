"""The FTP server driven through StringTransport and a MemoryReactorClock,
with a real portal over a FileDirectory (no sockets, no threads)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from communigate.portal.filesession import FileSession, IFileSession
from communigate.portal.realm import AccountRealm
from communigate.protocols.access import LoginService
from communigate.protocols.ftp import parser
from communigate.protocols.ftp.data import CONNECT_TIMEOUT
from communigate.protocols.ftp.parser import State
from communigate.protocols.ftp.server import (
    IDLE_TIMEOUT,
    LOGIN_TIMEOUT,
    MAX_QUEUE,
    FTPFactory,
    FTPServer,
)
from communigate.protocols.ftp.session import MAX_ERRORS
from communigate.protocols.tls import DomainContexts
from communigate.store.files import FileDirectory
from tests.conftest import Exchange, login_service

CLIENT = "127.0.0.9"
LOGIN = b"USER info\r\nPASS pw-company.com\r\n"


class FakePort:
    """A listening port that reports the port it was asked for and whether
    it stopped listening."""

    def __init__(self, host: str, port: int) -> None:
        self.address = IPv4Address("TCP", host, port)
        self.stopped = False

    def getHost(self) -> IPv4Address:
        return self.address

    def stopListening(self) -> None:
        self.stopped = True


class Reactor(MemoryReactorClock):
    """MemoryReactorClock keeping the FakePorts of listenTCP."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakePort] = []

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        super().listenTCP(port, factory, backlog, interface)
        self.ports.append(FakePort(interface, port))
        return self.ports[-1]


class PendingLogin(LoginService):
    """A login service whose answer comes only when the test gives it."""

    answer: Deferred[Any] | None = None

    def login(self, credentials: Any, interface: Any) -> Deferred[Any]:
        self.answer = Deferred()
        return self.answer


class TLSRecordingTransport(StringTransport):
    """A StringTransport that records a switch to TLS."""

    tls_started = False

    def startTLS(self, contexts: object) -> None:
        self.tls_started = True


class Session(Exchange):
    """An FTP server on a StringTransport, logging into a FileDirectory."""

    def __init__(
        self,
        directory: FileDirectory,
        local: str = "127.0.0.1",
        peer: str = CLIENT,
        service_class: type[LoginService] = LoginService,
        transport_class: type[StringTransport] = StringTransport,
        **options: Any,
    ) -> None:
        self.directory = directory
        self.service = login_service(directory, service_class)
        self.reactor = Reactor()
        options.setdefault("passive_ports", range(50000, 50100))
        self.factory = FTPFactory(self.service, self.reactor, pool=None, **options)
        server = self.factory.buildProtocol(IPv4Address("TCP", peer, 4000))
        assert isinstance(server, FTPServer)
        self.server: FTPServer = server
        self.events: list[dict[str, Any]] = []
        self.server.log = Logger(observer=self.events.append)
        self.transport: StringTransport = transport_class(
            hostAddress=IPv4Address("TCP", local, 21), peerAddress=IPv4Address("TCP", peer, 4000)
        )
        self.server.makeConnection(self.transport)

    def login(self) -> bytes:
        self.take()
        out = self.send(LOGIN)
        assert codes(out) == [331, 230], out
        return out

    def failures(self) -> list[dict[str, Any]]:
        """Logged failures (what a 451 reply stands for)."""
        return [event for event in self.events if "log_failure" in event]

    def timers(self) -> list[str]:
        """The qualified names of the pending DelayedCalls' functions."""
        return [
            getattr(getattr(call, "func", None), "__qualname__", "?")
            for call in self.reactor.getDelayedCalls()
        ]

    def storage(self) -> Any:
        return self.directory.account_path("company.com", "info") / "account.web"

    def data_connection(self, peer: str = CLIENT) -> tuple[Any, StringTransport]:
        """Connect to the last passive port from ``peer``."""
        factory = self.reactor.tcpServers[-1][1]
        protocol = factory.buildProtocol(IPv4Address("TCP", peer, 40000))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 50000),
            peerAddress=IPv4Address("TCP", peer, 40000),
        )
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport


def codes(data: bytes) -> list[int]:
    """The codes of the complete replies in ``data`` (last lines of multi-line ones)."""
    return [int(line[:3]) for line in data.split(b"\r\n") if re.match(rb"\d{3} ", line)]


@pytest.fixture
def session(directory: FileDirectory) -> Session:
    """A logged-in session of info@company.com."""
    ready = Session(directory)
    ready.login()
    return ready


# -- greeting and login --------------------------------------------------------------


def test_greeting(directory: FileDirectory) -> None:
    """The greeting is 220 naming the domain of the address the client reached."""
    assert Session(directory).take() == b"220 company.com FTP server ready\r\n"
    assert Session(directory, local="127.0.0.2").take() == b"220 client1.com FTP server ready\r\n"


def test_login(directory: FileDirectory) -> None:
    """USER gets 331, the right PASS 230; PWD is then '/'."""
    ftp = Session(directory)
    ftp.take()
    assert ftp.send(b"USER info\r\n") == b"331 please send the password\r\n"
    assert ftp.send(b"PASS pw-company.com\r\n") == b"230 logged in\r\n"
    assert ftp.send(b"PWD\r\n") == b'257 "/" is the current directory\r\n'
    assert ftp.send(b"STAT\r\n").count(b"logged in as info@company.com") == 1


def test_login_answer_may_come_later(directory: FileDirectory) -> None:
    """Commands sent while the portal has not answered wait, then run in order."""
    ftp = Session(directory, service_class=PendingLogin)
    ftp.take()
    assert ftp.send(LOGIN + b"PWD\r\nNOOP\r\n") == b"331 please send the password\r\n"
    service = ftp.service
    assert isinstance(service, PendingLogin) and service.answer is not None
    avatar = AccountRealm(directory).requestAvatar(b"info@company.com", None, IFileSession)
    service.answer.callback(avatar)
    assert codes(ftp.take()) == [230, 257, 200]


def test_wrong_password_three_times_closes(directory: FileDirectory) -> None:
    """A wrong password gets 530; the third failure adds 421 and closes."""
    ftp = Session(directory)
    ftp.take()
    for _ in range(2):
        out = ftp.send(b"USER info\r\nPASS wrong\r\n")
        assert out == b"331 please send the password\r\n530 incorrect password or account name\r\n"
        assert not ftp.transport.disconnecting
    out = ftp.send(b"USER nobody\r\nPASS wrong\r\n")
    assert codes(out) == [331, 530, 421]
    assert ftp.transport.disconnecting


def test_pipelined_failed_login(directory: FileDirectory) -> None:
    """'USER a / PASS b / PASS c' in one packet gives 331, 530, 503 in order."""
    ftp = Session(directory)
    ftp.take()
    assert codes(ftp.send(b"USER a\r\nPASS b\r\nPASS c\r\n")) == [331, 530, 503]


def test_pass_without_user_and_after_login(directory: FileDirectory) -> None:
    """PASS before USER and PASS after login both get 503."""
    ftp = Session(directory)
    ftp.take()
    assert codes(ftp.send(b"PASS x\r\n")) == [503]
    ftp.send(LOGIN)
    assert codes(ftp.send(b"PASS x\r\nUSER info\r\n")) == [503, 503]


def test_commands_before_login(directory: FileDirectory) -> None:
    """File commands before login get 530; after USER they get 503."""
    ftp = Session(directory)
    ftp.take()
    assert codes(ftp.send(b"PWD\r\nLIST\r\nPASV\r\n")) == [530, 530, 530]
    ftp.send(b"USER info\r\n")
    assert codes(ftp.send(b"CWD /\r\n")) == [503]


def test_clear_text_login_refused_from_remote(directory: FileDirectory) -> None:
    """From a non-local address without TLS, USER is refused with 530."""
    ftp = Session(directory, peer="192.0.2.7")
    ftp.take()
    assert ftp.send(b"USER info\r\n").startswith(b"530 clear-text login is not allowed")


# -- stray arguments, sequences, simple commands -------------------------------------------


@pytest.mark.parametrize("verb", [b"FEAT", b"SYST", b"PWD", b"NOOP", b"QUIT", b"CDUP", b"PASV"])
def test_stray_argument_is_501(session: Session, verb: bytes) -> None:
    """Commands that take no argument refuse one with 501 (QUIT x does not quit)."""
    assert codes(session.send(verb + b" x\r\n")) == [501]
    assert not session.transport.disconnecting


def test_feat_syst_noop_quit(session: Session) -> None:
    """FEAT is a 211 multi-line list; SYST 215; NOOP 200; QUIT 221 and closes."""
    feat = session.send(b"FEAT\r\n")
    assert feat.startswith(b"211-") and feat.endswith(b"211 End\r\n")
    assert b"\r\n EPSV\r\n" in feat and b"\r\n UTF8\r\n" in feat
    assert session.send(b"SYST\r\n") == b"215 UNIX Type: L8\r\n"
    assert session.send(b"NOOP\r\n") == b"200 NOOP ok\r\n"
    assert session.send(b"QUIT\r\nNOOP\r\n") == b"221 goodbye\r\n"
    assert session.transport.disconnecting


def test_rnto_without_rnfr(session: Session) -> None:
    """RNTO without a preceding RNFR gets 503."""
    assert codes(session.send(b"RNTO b\r\n")) == [503]


def test_rnto_must_follow_rnfr_at_once(session: Session) -> None:
    """RNFR, NOOP, RNTO: the RNTO gets 503 and nothing is renamed."""
    (session.storage() / "a").write_bytes(b"a")
    assert codes(session.send(b"RNFR a\r\nNOOP\r\nRNTO b\r\n")) == [350, 200, 503]
    assert (session.storage() / "a").exists() and not (session.storage() / "b").exists()


def test_rename(session: Session) -> None:
    """RNFR then RNTO renames (350, 250)."""
    (session.storage() / "a").write_bytes(b"a")
    assert codes(session.send(b"RNFR a\r\nRNTO b\r\n")) == [350, 250]
    assert (session.storage() / "b").read_bytes() == b"a"


def test_directories(session: Session) -> None:
    """MKD (257, quotes doubled), CWD, XPWD, CDUP, RMD; DELE of a folder is 550."""
    assert session.send(b'MKD a"b\r\n') == b'257 "/a""b" created\r\n'
    assert codes(session.send(b'CWD a"b\r\n')) == [250]
    assert session.send(b"XPWD\r\n") == b'257 "/a""b" is the current directory\r\n'
    assert codes(session.send(b'CDUP\r\nDELE a"b\r\nRMD a"b\r\n')) == [250, 550, 250]
    assert not (session.storage() / 'a"b').exists()


def test_rmd_root(session: Session) -> None:
    """RMD / is refused with 550 and the storage stays."""
    assert codes(session.send(b"RMD /\r\n")) == [550]
    assert codes(session.send(b"XRMD ~info/..\r\nRMD ~info\r\nRMD ..\r\n")) == [550, 550, 550]
    assert session.storage().is_dir()


def test_cwd_harvesting(directory: FileDirectory, session: Session) -> None:
    """CWD ~unknown and ~unshared get byte-identical 550s; a granted one 250."""
    unknown = session.send(b"CWD ~nosuch\r\n")
    unshared = session.send(b"CWD ~j.smith@client1.com\r\n")
    unknown_elsewhere = session.send(b"CWD ~nosuch@client1.com\r\n")
    assert unknown == unshared == unknown_elsewhere
    assert codes(unknown) == [550]
    assert session.send(b"PWD\r\n") == b'257 "/" is the current directory\r\n'

    owner = FileSession(directory, "client1.com", "j.smith")
    owner.own.set_access("/", {"Access": {"info@company.com": "r"}})
    assert codes(session.send(b"CWD ~j.smith@client1.com\r\n")) == [250]
    assert b'"/~j.smith@client1.com"' in session.send(b"PWD\r\n")


def test_file_information(session: Session) -> None:
    """SIZE, MDTM, MLST on a file; SIZE of a folder and of a missing file get 550."""
    (session.storage() / "f.txt").write_bytes(b"12345")
    assert session.send(b"SIZE f.txt\r\n") == b"213 5\r\n"
    assert re.fullmatch(rb"213 \d{14}\r\n", session.send(b"MDTM f.txt\r\n"))
    mlst = session.send(b"MLST f.txt\r\n")
    assert mlst.startswith(b"250-") and b" type=file;size=5;" in mlst
    assert codes(session.send(b"SIZE /\r\nSIZE nosuch\r\n")) == [550, 550]


def test_host(directory: FileDirectory) -> None:
    """HOST before USER gets 220 and picks the domain; unknown gets 504; after login 503."""
    ftp = Session(directory)
    ftp.take()
    assert ftp.send(b"HOST nosuch.example\r\n") == b"504 unknown host\r\n"
    assert ftp.send(b"HOST client1.com\r\n") == b"220 client1.com FTP server ready\r\n"
    assert codes(ftp.send(b"USER j.smith\r\nPASS js\r\n")) == [331, 230]
    assert codes(ftp.send(b"HOST client1.com\r\n")) == [503]


def test_host_after_user(directory: FileDirectory) -> None:
    """HOST after USER (before PASS) gets 503."""
    ftp = Session(directory)
    ftp.take()
    assert codes(ftp.send(b"USER info\r\nHOST client1.com\r\n")) == [331, 503]


def test_auth_without_tls_and_ccc(directory: FileDirectory) -> None:
    """AUTH TLS without certificates gets 431; CCC gets 534; PBSZ/PROT need TLS (503)."""
    ftp = Session(directory, tls=None)
    ftp.take()
    assert codes(ftp.send(b"AUTH TLS\r\n")) == [431]
    assert codes(ftp.send(b"AUTH KERBEROS\r\n")) == [504]
    assert codes(ftp.send(b"CCC\r\n")) == [534]
    assert codes(ftp.send(b"PBSZ 0\r\nPROT P\r\n")) == [503, 503]


def test_auth_tls_discards_pipelined_commands(directory: FileDirectory) -> None:
    """AUTH TLS gets 234, starts TLS and drops what was pipelined behind it."""
    ftp = Session(directory, tls=DomainContexts(directory), transport_class=TLSRecordingTransport)
    ftp.take()
    assert ftp.send(b"AUTH TLS\r\nUSER info\r\nPASS pw-company.com\r\n") == (
        b"234 AUTH TLS successful\r\n"
    )
    assert ftp.transport.tls_started  # type: ignore[attr-defined]
    assert ftp.server.user is None and ftp.server.files is None
    assert codes(ftp.send(b"AUTH TLS\r\n")) == [503]
    assert ftp.send(b"PBSZ 0\r\nPROT P\r\nPROT S\r\n") == (
        b"200 PBSZ=0\r\n200 protection level P\r\n536 only PROT P and PROT C are supported\r\n"
    )


def test_tls_allows_clear_text_login_from_remote(directory: FileDirectory) -> None:
    """From a remote address, USER/PASS are accepted once AUTH TLS protects the link."""
    ftp = Session(
        directory,
        peer="192.0.2.7",
        tls=DomainContexts(directory),
        transport_class=TLSRecordingTransport,
    )
    ftp.take()
    ftp.send(b"AUTH TLS\r\n")
    assert codes(ftp.send(LOGIN)) == [331, 230]
    assert b"control connection TLS, data connections clear" in ftp.send(b"STAT\r\n")


def test_stat_and_help(directory: FileDirectory) -> None:
    """STAT is a 211 multi-line status; HELP a 214 multi-line list; HELP x one line."""
    ftp = Session(directory)
    ftp.take()
    stat = ftp.send(b"STAT\r\n")
    assert stat.startswith(b"211-") and stat.endswith(b"211 End of status\r\n")
    assert b"\r\n not logged in\r\n" in stat
    help_text = ftp.send(b"HELP\r\n")
    assert help_text.startswith(b"214-") and help_text.endswith(b"214 Help OK\r\n")
    assert all(line.startswith(b" ") for line in help_text.split(b"\r\n")[1:-2])
    assert ftp.send(b"HELP retr\r\n") == b"214 RETR path: download\r\n"
    assert codes(ftp.send(b"HELP FOO\r\n")) == [501]


def test_stat_with_path_lists_on_control_connection(session: Session) -> None:
    """STAT path is a 213 listing on the control connection."""
    (session.storage() / "f.txt").write_bytes(b"12345")
    out = session.send(b"STAT -la /\r\n")
    assert out.startswith(b"213-status:\r\n -rw-r--r-- 1 ftp ftp            5 ")
    assert out.endswith(b" f.txt\r\n213 End of status\r\n")


def test_type_mode_stru_opts_site(session: Session) -> None:
    """Transfer parameters: the supported ones get 200, others 504/501."""
    assert codes(session.send(b"TYPE I\r\nTYPE A\r\nTYPE L 8\r\nTYPE E\r\n")) == [
        200,
        200,
        200,
        504,
    ]
    assert codes(session.send(b"MODE S\r\nMODE B\r\nSTRU F\r\nSTRU R\r\n")) == [200, 504, 200, 504]
    assert codes(session.send(b"OPTS UTF8 ON\r\nOPTS FOO\r\n")) == [200, 501]
    assert codes(session.send(b"SITE HELP\r\nSITE CHMOD 777 x\r\n")) == [214, 504]
    assert codes(session.send(b"ALLO 10\r\nACCT x\r\nREIN\r\n")) == [202, 202, 502]


# -- data connections ------------------------------------------------------------------


def test_epsv_all_refuses_other_data_commands(session: Session) -> None:
    """After EPSV ALL, PASV, PORT and EPRT get 503; EPSV still works."""
    assert codes(session.send(b"EPSV ALL\r\n")) == [200]
    out = session.send(b"PASV\r\nPORT 127,0,0,9,4,1\r\nEPRT |1|127.0.0.9|1025|\r\n")
    assert codes(out) == [503, 503, 503]
    assert codes(session.send(b"EPSV\r\n")) == [229]


def test_port_only_to_the_client(session: Session) -> None:
    """PORT/EPRT get 504 for a foreign address or a port below 1024."""
    assert codes(session.send(b"PORT 10,0,0,1,4,1\r\n")) == [504]
    assert codes(session.send(b"PORT 127,0,0,9,0,21\r\n")) == [504]
    assert codes(session.send(b"EPRT |1|10.0.0.1|1025|\r\n")) == [504]
    assert codes(session.send(b"EPRT |1|127.0.0.9|1023|\r\n")) == [504]
    assert codes(session.send(b"PORT 127,0,0,9,0,0\r\nEPRT |3|127.0.0.9|1025|\r\n")) == [501, 522]
    assert session.reactor.tcpClients == []
    assert codes(session.send(b"PORT 127,0,0,9,4,1\r\nEPRT |1|127.0.0.9|1025|\r\n")) == [200, 200]


def test_port_transfer_dials_the_client(session: Session) -> None:
    """After PORT, LIST dials the client from the control connection's address."""
    session.send(b"PORT 127,0,0,9,4,1\r\nLIST\r\n")
    host, port, _, _, bind = session.reactor.tcpClients[-1]
    assert (host, port, bind) == (CLIENT, 1025, ("127.0.0.1", 0))


def test_pasv_listens_on_the_control_address(session: Session) -> None:
    """PASV listens on the control address; 227 carries that address and port."""
    out = session.send(b"PASV\r\n")
    number, _, _, interface = session.reactor.tcpServers[-1]
    assert interface == "127.0.0.1" and number in range(50000, 50100)
    assert (
        out == f"227 entering passive mode (127,0,0,1,{number // 256},{number % 256})\r\n".encode()
    )
    again = session.send(b"EPSV\r\n")
    assert session.reactor.ports[0].stopped
    port = session.reactor.ports[-1].address.port
    assert again == f"229 entering extended passive mode (|||{port}|)\r\n".encode()


def test_epsv_wrong_family(session: Session) -> None:
    """EPSV 2 on an IPv4 control connection gets 522; EPSV 1 works."""
    assert codes(session.send(b"EPSV 2\r\nEPSV 1\r\n")) == [522, 229]


@pytest.mark.parametrize(
    "command", [b"LIST", b"NLST", b"MLSD", b"RETR f.txt", b"STOR f.txt", b"APPE f.txt", b"STOU"]
)
def test_transfer_without_data_connection(session: Session, command: bytes) -> None:
    """Transfer commands without PORT/EPRT/PASV/EPSV get 425 and the session goes on."""
    (session.storage() / "f.txt").write_bytes(b"old")
    assert codes(session.send(command + b"\r\n")) == [425]
    assert codes(session.send(b"NOOP\r\n")) == [200]
    assert (session.storage() / "f.txt").read_bytes() == b"old"


def test_stor_through_passive_connection(session: Session) -> None:
    """STOR over a passive connection: 150, bytes, clean close, 226, replaced."""
    (session.storage() / "f.txt").write_bytes(b"old")
    session.send(b"PASV\r\n")
    assert session.send(b"STOR f.txt\r\n") == b""
    data, _ = session.data_connection()
    assert data is not None
    assert codes(session.take()) == [150]
    data.dataReceived(b"new ")
    data.dataReceived(b"content")
    data.connectionLost(Failure(ConnectionDone()))
    assert session.take() == b"226 transfer complete\r\n"
    assert (session.storage() / "f.txt").read_bytes() == b"new content"
    assert session.send(b"NOOP\r\n") == b"200 NOOP ok\r\n"


def test_broken_stor_keeps_the_old_file(session: Session) -> None:
    """A data connection that breaks mid-STOR gets 426 and the old file stays."""
    (session.storage() / "f.txt").write_bytes(b"old")
    session.send(b"PASV\r\nSTOR f.txt\r\n")
    data, _ = session.data_connection()
    assert data is not None
    data.dataReceived(b"partial")
    data.connectionLost(Failure(ConnectionLost()))
    assert codes(session.take()) == [150, 426]
    assert (session.storage() / "f.txt").read_bytes() == b"old"
    uploads = session.storage().parent / "uploads.tmp"
    assert list(uploads.iterdir()) == []


def test_abor_during_stor(session: Session) -> None:
    """ABOR during STOR gets 426 then 226 at once, and the old file stays."""
    (session.storage() / "f.txt").write_bytes(b"old")
    session.send(b"PASV\r\nSTOR f.txt\r\n")
    data, transport = session.data_connection()
    assert data is not None
    data.dataReceived(b"partial")
    session.take()
    session.server.dataReceived(b"\xff\xf4\xff\xf2ABOR\r\n")
    assert transport.disconnecting
    data.connectionLost(Failure(ConnectionLost()))
    assert codes(session.take()) == [426, 226]
    assert (session.storage() / "f.txt").read_bytes() == b"old"


def test_retr_and_list_through_passive_connection(session: Session) -> None:
    """RETR sends the file from the REST offset; LIST sends ls lines; both end with 226."""
    (session.storage() / "f.txt").write_bytes(b"0123456789")
    session.server.dataReceived(b"REST 4\r\nPASV\r\nRETR f.txt\r\n")
    data, transport = session.data_connection()
    assert data is not None
    while transport.producer is not None:
        transport.producer.resumeProducing()
    assert transport.value() == b"456789" and transport.disconnecting
    data.connectionLost(Failure(ConnectionDone()))
    assert codes(session.take()) == [350, 227, 150, 226]

    session.server.dataReceived(b"PASV\r\nLIST\r\n")
    data, transport = session.data_connection()
    assert data is not None
    assert transport.value().endswith(b" f.txt\r\n") and transport.disconnecting
    data.connectionLost(Failure(ConnectionDone()))
    assert codes(session.take()) == [227, 150, 226]


def test_mlsd_through_passive_connection(session: Session) -> None:
    """MLSD sends facts lines of the named directory; MLSD of a file gets 501."""
    (session.storage() / "d").mkdir()
    (session.storage() / "d" / "inside.txt").write_bytes(b"x")
    assert codes(session.send(b"PASV\r\nMLSD d/inside.txt\r\n")) == [227, 501]
    session.server.dataReceived(b"MLSD d\r\n")
    data, transport = session.data_connection()
    assert data is not None
    assert transport.value().startswith(b"type=file;size=1;modify=")
    assert transport.value().endswith(b"; inside.txt\r\n")
    data.connectionLost(Failure(ConnectionDone()))
    assert codes(session.take()) == [150, 226]


def test_mlsd_does_not_take_ls_options(session: Session) -> None:
    """MLSD has no options (RFC 3659 §7): 'MLSD -d' lists the folder named '-d'."""
    (session.storage() / "-d").mkdir()
    (session.storage() / "-d" / "inside.txt").write_bytes(b"x")
    (session.storage() / "top.txt").write_bytes(b"x")
    session.server.dataReceived(b"PASV\r\nMLSD -d\r\n")
    data, transport = session.data_connection()
    assert data is not None
    assert transport.value().endswith(b"; inside.txt\r\n")


def test_passive_port_refuses_a_foreign_address(session: Session) -> None:
    """The passive port refuses another address and still takes the client."""
    session.send(b"PASV\r\nNLST\r\n")
    foreign, _ = session.data_connection(peer="10.6.6.6")
    assert foreign is None
    assert session.take() == b""
    data, _ = session.data_connection()
    assert data is not None
    data.connectionLost(Failure(ConnectionDone()))
    assert codes(session.take()) == [150, 226]


def test_passive_connection_times_out(session: Session) -> None:
    """A client that never connects to the passive port gets 425; the port closes."""
    session.send(b"PASV\r\nLIST\r\n")
    session.reactor.advance(CONNECT_TIMEOUT)
    assert codes(session.take()) == [425]
    assert session.reactor.ports[-1].stopped
    assert codes(session.send(b"NOOP\r\n")) == [200]


def test_queue_pauses_reading(session: Session) -> None:
    """Over MAX_QUEUE waiting lines pause reading until they have run."""
    session.send(b"PASV\r\nLIST\r\n")
    session.server.dataReceived(b"NOOP\r\n" * (MAX_QUEUE + 1))
    assert session.transport.producerState == "paused"
    data, _ = session.data_connection()
    assert data is not None
    data.connectionLost(Failure(ConnectionDone()))
    assert codes(session.take()) == [150, 226] + [200] * (MAX_QUEUE + 1)
    assert session.transport.producerState == "producing"


# -- limits and timers ----------------------------------------------------------------------


def test_idle_timeout(session: Session) -> None:
    """After IDLE_TIMEOUT without a command: 421 and close."""
    session.reactor.advance(IDLE_TIMEOUT - 1)
    session.send(b"NOOP\r\n")
    session.reactor.advance(IDLE_TIMEOUT - 1)
    assert session.take() == b"" and not session.transport.disconnecting
    session.reactor.advance(1)
    assert session.take() == b"421 idle time-out, closing the control connection\r\n"
    assert session.transport.disconnecting


def test_login_deadline_is_not_extended_by_bytes(directory: FileDirectory) -> None:
    """A byte every 10 s does not keep an unauthenticated session open past LOGIN_TIMEOUT."""
    ftp = Session(directory)
    ftp.take()
    for _ in range(LOGIN_TIMEOUT // 10 - 1):
        ftp.server.dataReceived(b"N")
        ftp.reactor.advance(10)
    assert not ftp.transport.disconnecting
    ftp.server.dataReceived(b"N")
    ftp.reactor.advance(10)
    assert ftp.take() == b"421 login time-out, closing the control connection\r\n"
    assert ftp.transport.disconnecting


def test_login_cancels_the_deadline(session: Session) -> None:
    """After login the login deadline no longer applies."""
    session.reactor.advance(LOGIN_TIMEOUT + 1)
    assert session.take() == b"" and not session.transport.disconnecting


def test_long_line(session: Session) -> None:
    """A 10,000-byte line gets 500 and the session still answers NOOP."""
    out = session.send(b"NOOP " + b"x" * 10_000 + b"\r\nNOOP\r\n")
    assert codes(out) == [500, 200]
    for _ in range(10):
        session.server.dataReceived(b"y" * 1000)
    assert codes(session.send(b"\r\nNOOP\r\n")) == [500, 200]


def test_too_many_errors_close(session: Session) -> None:
    """25 bad commands: MAX_ERRORS replies, then 421 and the connection closes."""
    out = session.send(b"BOGUS\r\n" * 25)
    assert codes(out) == [500] * MAX_ERRORS + [421]
    assert session.transport.disconnecting


def test_connection_lost_logs_out_and_stops_timers(session: Session) -> None:
    """When the control connection goes, no timer of the session is left."""
    session.server.connectionLost(Failure(ConnectionDone()))
    assert session.reactor.getDelayedCalls() == []
    assert session.failures() == []


def test_connection_lost_during_transfer_is_quiet(session: Session) -> None:
    """Control loss during a waiting STOR: no log, no reply, no timer, no file."""
    session.send(b"PASV\r\nSTOR f.txt\r\n")
    session.server.connectionLost(Failure(ConnectionLost()))
    assert session.failures() == []
    assert session.take() == b""
    assert session.reactor.ports[-1].stopped
    assert not any(
        getattr(call, "func", None) == session.server._timed_out
        for call in session.reactor.getDelayedCalls()
    )
    assert list((session.storage().parent / "uploads.tmp").iterdir()) == []
    assert not (session.storage() / "f.txt").exists()


@pytest.mark.parametrize("end", ["ABOR", "connection lost"])
def test_aborted_passive_transfer_leaves_no_timer(session: Session, end: str) -> None:
    """An aborted passive transfer leaves no DelayedCall but the idle timer."""
    session.send(b"PASV\r\nLIST\r\n")
    if end == "ABOR":
        assert codes(session.send(b"ABOR\r\n")) == [426, 226]
    else:
        session.server.connectionLost(Failure(ConnectionLost()))
    left = [
        call
        for call in session.reactor.getDelayedCalls()
        if getattr(call, "func", None) != session.server._timed_out
    ]
    assert left == []


def test_connection_lost_during_login_is_quiet(directory: FileDirectory) -> None:
    """Losing the control connection while the portal thinks logs no failure and sends nothing."""
    ftp = Session(directory, service_class=PendingLogin)
    ftp.take()
    ftp.send(LOGIN)
    ftp.server.connectionLost(Failure(ConnectionLost()))
    assert ftp.failures() == []
    assert ftp.take() == b""
    assert ftp.reactor.getDelayedCalls() == []


def test_login_answer_after_connection_lost_is_ignored(directory: FileDirectory) -> None:
    """A login answer after the client left is cancelled and ignored."""
    ftp = Session(directory, service_class=PendingLogin)
    ftp.take()
    ftp.send(LOGIN)
    service = ftp.service
    assert isinstance(service, PendingLogin) and service.answer is not None
    answer = service.answer
    ftp.server.connectionLost(Failure(ConnectionLost()))
    assert answer.called
    answer.callback(AccountRealm(directory).requestAvatar(b"info@company.com", None, IFileSession))
    assert ftp.take() == b"" and ftp.failures() == []
    assert ftp.server.state is not State.READY and ftp.server.files is None


# -- replies that must not be 451 (known bugs) -----------------------------------------------


@pytest.mark.parametrize(
    "line", ["PORT 127,0,0,9,4,\u00b2", "REST \u00b2", "EPRT |1|127.0.0.9|\u00b2|"]
)
def test_unicode_digits_are_501(session: Session, line: str) -> None:
    """Non-ASCII digits in PORT, REST and EPRT get 501, not 451."""
    assert codes(session.send(line.encode() + b"\r\n")) == [501]
    assert session.failures() == []


@pytest.mark.parametrize("verb", [b"CWD", b"LIST", b"DELE", b"CWD ~"])
def test_overlong_name_is_550(session: Session, verb: bytes) -> None:
    """A path segment longer than the file system allows gets 550/553, not 451."""
    session.send(b"PASV\r\n")
    out = session.send(verb + (b"" if verb.endswith(b"~") else b" ") + b"a" * 300 + b"\r\n")
    assert codes(out)[0] in (550, 553)
    assert session.failures() == []


# -- robustness ----------------------------------------------------------------------------

_ARGUMENTS = st.one_of(
    st.sampled_from(
        [
            "",
            "/",
            "..",
            "~nosuch",
            "~j.smith@client1.com",
            "-la",
            "ALL",
            "1",
            "TLS",
            "127,0,0,9,4,1",
            "|1|127.0.0.9|5000|",
            "d",
            "f.txt",
            "d/../../..",
        ]
    ).map(str.encode),
    st.text(max_size=40).map(str.encode),
    st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b"")),
)
_KEYWORDS = st.sampled_from(sorted(parser.COMMANDS)).flatmap(
    lambda word: st.sampled_from([word, word.lower()])
)
_COMMAND_LINES = st.tuples(_KEYWORDS.map(str.encode), _ARGUMENTS).map(
    lambda pair: (pair[0] + b" " + pair[1]).rstrip(b" ")
)
_NOISE = st.binary(max_size=60).map(lambda raw: raw.replace(b"\n", b""))
#: Three lines in four start with a known keyword, the rest are noise.
_LINES = st.sampled_from([True, True, True, False]).flatmap(
    lambda command: _COMMAND_LINES if command else _NOISE
)


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(_LINES, min_size=1, max_size=6), st.booleans(), st.integers(1, 50))
def test_random_lines_never_break_the_server(
    directory: FileDirectory, lines: list[bytes], logged_in: bool, chunk: int
) -> None:
    """Random lines never raise, never get 451, never log a failure."""
    ftp = Session(directory)
    if logged_in:
        ftp.login()
        # A folder and a file for the commands to find.
        (ftp.storage() / "d").mkdir(exist_ok=True)
        (ftp.storage() / "f.txt").write_bytes(b"0123456789")
    stream = b"".join(line + b"\r\n" for line in lines)
    for start in range(0, len(stream), chunk):
        ftp.server.dataReceived(stream[start : start + chunk])
    if logged_in:
        # Transfers waiting for a data connection give up; queued lines run.
        ftp.reactor.advance(CONNECT_TIMEOUT)
    out = ftp.take()
    assert not re.search(rb"(^|\r\n)451", out), out
    assert ftp.failures() == []
    ftp.server.connectionLost(Failure(ConnectionDone()))
