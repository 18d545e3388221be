"""Metrics: counters per login, open sessions, lockouts, TLS handshakes,
the External helper; bounded labels; /metrics rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from communigate.cred.checkers.external import ExternalHelper, HelperSettings
from communigate.observe.events import IActivityObserver
from communigate.observe.metrics import Metrics, MetricsPage, metrics_root
from communigate.observe.traffic import CountingFactory
from communigate.protocols.imap4.server import IMAP4Factory
from communigate.store.files import FileDirectory
from tests.observe.helpers import CLIENT, SERVER, imap, observed_service


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample's value, 0 when absent."""
    found = metrics.registry.get_sample_value(name, labels)
    return found if found is not None else 0.0


def test_metrics_is_an_observer() -> None:
    """Metrics provides IActivityObserver; two can live in one process."""
    assert verifyObject(IActivityObserver, Metrics())
    assert Metrics().registry is not Metrics().registry


def test_logins_sessions_and_latency(directory: FileDirectory) -> None:
    """A good and a bad IMAP login move their counters by one each; the
    session gauge follows login and logout; latency is observed."""
    metrics = Metrics()
    service, reactor = observed_service(directory, metrics)
    wire = imap(service, reactor)
    wire.send(b"a LOGIN info wrong\r\n")
    reactor.advance(10)
    wire.send(b"b LOGIN info pw-company.com\r\n")
    labels = {"protocol": "imap4", "domain": "company.com", "mechanism": "LOGIN"}
    assert value(metrics, "communigate_logins_total", result="ok", **labels) == 1
    assert value(metrics, "communigate_logins_total", result="wrong-password", **labels) == 1
    assert value(metrics, "communigate_sessions_open", protocol="imap4") == 1
    assert value(metrics, "communigate_login_latency_seconds_count", protocol="imap4") == 2
    wire.send(b"c LOGOUT\r\n")
    wire.server.connectionLost(Failure(Exception("closed")))
    assert value(metrics, "communigate_sessions_open", protocol="imap4") == 0


def test_typed_domains_do_not_make_labels(directory: FileDirectory) -> None:
    """Names in domains the server does not have count under 'unknown';
    no account name is ever a label."""
    metrics = Metrics()
    service, reactor = observed_service(directory, metrics)
    wire = imap(service, reactor)
    for number in range(3):
        wire.send(b"a%d LOGIN user%d@random%d.example x\r\n" % (number, number, number))
        reactor.advance(10)
    request: Any = DummyRequest([b""])
    text = MetricsPage(metrics.registry).render_GET(request).decode()
    assert "random" not in text and "user0" not in text
    labels = {"protocol": "imap4", "mechanism": "LOGIN", "result": "unknown-account"}
    assert value(metrics, "communigate_logins_total", domain="unknown", **labels) == 3


def test_lockouts_are_counted(directory: FileDirectory) -> None:
    """The failure that locks an account counts one lockout."""
    directory.update_account_settings("company.com", "info", {"FailedLoginFlow": ["1", "10m"]})
    metrics = Metrics()
    service, reactor = observed_service(directory, metrics)
    wire = imap(service, reactor)
    for tag in (b"a", b"b"):
        wire.send(tag + b" LOGIN info wrong\r\n")
        reactor.advance(10)
    count = value(metrics, "communigate_lockouts_total", protocol="imap4", domain="company.com")
    assert count == 1


class _TLSTransport(StringTransport):
    def startTLS(self, contexts: Any, normal: bool = True) -> None:
        self.tls = contexts


def test_tls_handshakes(directory: FileDirectory) -> None:
    """An implicit-TLS handshake and a STARTTLS upgrade are each counted once."""
    metrics = Metrics()
    service, reactor = observed_service(directory, metrics)
    factory = CountingFactory(
        IMAP4Factory(service, reactor, max_message=10), metrics.handshake("imap4")
    )
    wrapper = factory.buildProtocol(CLIENT)
    wrapper.makeConnection(_TLSTransport(hostAddress=SERVER, peerAddress=CLIENT))
    wrapper.handshakeCompleted()
    wrapper.startTLS(object())
    wrapper.dataReceived(b"a NOOP\r\n")
    wrapper.dataReceived(b"b NOOP\r\n")
    for kind in ("implicit", "starttls"):
        assert value(metrics, "communigate_tls_handshakes_total", protocol="imap4", kind=kind) == 1


class _Helper:
    starts = 0
    on_answer: Any = None


def test_external_helper_latency_and_starts() -> None:
    """The helper's answers are timed and its starts read when scraped."""
    metrics = Metrics(CollectorRegistry())
    helper = _Helper()
    metrics.watch_helper(helper)
    helper.on_answer(0.2)
    helper.starts = 2
    assert value(metrics, "communigate_external_helper_latency_seconds_count") == 1
    assert value(metrics, "communigate_external_helper_starts_total") == 2


def test_metrics_page_speaks_openmetrics_when_asked() -> None:
    """/metrics answers OpenMetrics to a scraper that asks, else Prometheus text."""
    metrics = Metrics()
    root = metrics_root(metrics.registry)
    page: Any = root.children[b"metrics"]
    request: Any = DummyRequest([b""])
    request.requestHeaders.addRawHeader(b"accept", b"application/openmetrics-text; version=1.0.0")
    body = page.render_GET(request)
    assert body.endswith(b"# EOF\n")
    assert b"openmetrics" in request.responseHeaders.getRawHeaders(b"content-type")[0]
    plain: Any = DummyRequest([b""])
    assert b"# TYPE communigate_logins_total counter" in page.render_GET(plain)
    assert b"text/plain" in plain.responseHeaders.getRawHeaders(b"content-type")[0]


def test_counting_wrapper_counts_bytes() -> None:
    """The wrapper counts bytes read and written, and names the session."""
    from twisted.internet.protocol import Protocol, ServerFactory

    class Echo(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data + data)  # type: ignore[union-attr]
            self.transport.writeSequence([b"a", b"bc"])  # type: ignore[union-attr]

    factory = CountingFactory(ServerFactory.forProtocol(Echo))
    wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    wrapper.makeConnection(transport)
    wrapper.dataReceived(b"xyz")
    assert (wrapper.bytes_in, wrapper.bytes_out) == (3, 9)
    assert transport.value() == b"xyzxyzabc" and len(wrapper.session_id) == 12


class _SpawningClock(Clock):
    """A Clock that pretends to spawn processes."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[Any] = []

    def spawnProcess(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
        protocol.makeConnection(StringTransport())
        self.spawned.append(protocol)


def test_real_helper_reports_answers_and_starts(tmp_path: Path) -> None:
    """ExternalHelper counts its starts and times each answer for the metrics."""
    reactor = _SpawningClock()
    helper = ExternalHelper(reactor, tmp_path)
    metrics = Metrics()
    metrics.watch_helper(helper)
    helper.configure(HelperSettings(True, "helper", 10, 1))
    answer = helper.verify("a@b.c", b"pw")
    reactor.advance(0.3)
    helper.line(b"%d OK" % helper.sequence)
    assert answer.called
    assert value(metrics, "communigate_external_helper_latency_seconds_sum") == 0.3
    helper.ended(reactor.spawned[0])
    reactor.advance(1)
    assert value(metrics, "communigate_external_helper_starts_total") == 2
