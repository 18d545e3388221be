"""Prometheus / OpenMetrics metrics of logins, sessions, TLS and the
External Authentication helper, served at ``/metrics``.

Every server has its own :class:`~prometheus_client.CollectorRegistry`
(never the process-wide default), so several can live in one process.
Label values are bounded: protocols, mechanisms and results come from the
server's own vocabulary, and the domain label is a configured domain or
:data:`UNKNOWN_DOMAIN` — never an account name, never a domain that only a
client typed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from communigate.observe.events import IActivityObserver, LockoutEvent, LoginEvent, LogoutEvent

#: The domain label of an attempt whose domain is not configured here.
UNKNOWN_DOMAIN = "unknown"
#: Seconds: a login is decided in milliseconds (a hash) to seconds (a
#: helper, a slow system password database).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _HelperStarts(Collector):
    """How many times the External helper was spawned, read when scraped."""

    def __init__(self, starts: Callable[[], int]) -> None:
        self._starts = starts

    def collect(self) -> Iterator[Metric]:
        """One counter family."""
        family = CounterMetricFamily(
            "communigate_external_helper_starts",
            "External Authentication helper processes started (1 + restarts).",
        )
        family.add_metric([], self._starts())
        yield family

    def describe(self) -> Iterator[Metric]:
        """The same family, without reading the helper."""
        yield CounterMetricFamily(
            "communigate_external_helper_starts",
            "External Authentication helper processes started (1 + restarts).",
        )


@implementer(IActivityObserver)
class Metrics:
    """The server's metrics; an activity observer that keeps them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.logins = Counter(
            "communigate_logins",
            "Login attempts by protocol, domain, mechanism and result.",
            ["protocol", "domain", "mechanism", "result"],
            registry=self.registry,
        )
        self.sessions = Gauge(
            "communigate_sessions_open",
            "Logged-in sessions open now, by protocol.",
            ["protocol"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "communigate_login_latency_seconds",
            "Seconds from a login attempt to its verdict (before any failure delay).",
            ["protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lockouts = Counter(
            "communigate_lockouts",
            "Accounts locked by too many failed logins, by protocol and domain.",
            ["protocol", "domain"],
            registry=self.registry,
        )
        self.handshakes = Counter(
            "communigate_tls_handshakes",
            "Completed TLS handshakes on client connections, by protocol and kind "
            "(implicit: a TLS listener; starttls: upgraded in the protocol).",
            ["protocol", "kind"],
            registry=self.registry,
        )
        self.helper_latency = Histogram(
            "communigate_external_helper_latency_seconds",
            "Seconds the External Authentication helper took to answer a request.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    @staticmethod
    def domain_label(domain: str | None) -> str:
        """The label of a domain: configured ones as they are, else ``unknown``."""
        return domain or UNKNOWN_DOMAIN

    def login(self, event: LoginEvent) -> None:
        """Count the attempt; time it."""
        self.logins.labels(
            event.protocol, self.domain_label(event.domain), event.mechanism, event.result
        ).inc()
        if event.latency is not None:
            self.latency.labels(event.protocol).observe(event.latency)

    def opened(self, protocol: str) -> None:
        """One more open session."""
        self.sessions.labels(protocol).inc()

    def logout(self, event: LogoutEvent) -> None:
        """One fewer open session."""
        self.sessions.labels(event.protocol).dec()

    def lockout(self, event: LockoutEvent) -> None:
        """Count the lockout."""
        self.lockouts.labels(event.protocol, self.domain_label(event.domain)).inc()

    def handshake(self, protocol: str) -> Callable[[str], None]:
        """A callback counting the TLS handshakes of ``protocol``'s listeners."""

        def count(kind: str) -> None:
            self.handshakes.labels(protocol, kind).inc()

        return count

    def watch_helper(self, helper: Any) -> None:
        """Time the answers of an External helper and count its starts."""
        helper.on_answer = self.helper_latency.observe
        self.registry.register(_HelperStarts(lambda: int(helper.starts)))


class MetricsPage(Resource):
    """``/metrics``: the registry in the text format the scraper accepts
    (OpenMetrics when its ``Accept`` header asks for it, else Prometheus)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        """The current values."""
        accept = request.getHeader("accept")
        encoder, content_type = choose_encoder(accept or "")
        request.setHeader("Content-Type", content_type)
        return bytes(encoder(self.registry))


def metrics_root(registry: CollectorRegistry) -> Resource:
    """A resource tree with :class:`MetricsPage` at ``/metrics``."""
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    return root
