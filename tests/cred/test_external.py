"""SASL EXTERNAL (RFC 4422 Appendix A) and what a client certificate names."""

from __future__ import annotations

import dataclasses

from zope.interface.verify import verifyObject

from communigate.cred.clientcert import VerifiedCertificate, certificate_address, verified
from communigate.cred.credentials import ConnectionInfo, IVerifiedIdentity, VerifiedIdentity
from communigate.cred.sasl import registry
from communigate.cred.sasl.external import External
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Success
from tests.clientcerts import make_ca, make_client

CERTIFICATE = VerifiedCertificate("john@client1.com", "client1.com", "CN=john")
PLAIN_LINK = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.1", secure=True)
WITH_CERTIFICATE = dataclasses.replace(PLAIN_LINK, client_certificate=CERTIFICATE)


def test_provides_interface() -> None:
    """EXTERNAL is registered and is an ISASLMechanism."""
    context = registry.ExchangeContext(WITH_CERTIFICATE, "client1.com", "host", b"k" * 32)
    mechanism = registry.create("external", context)
    assert isinstance(mechanism, External) and verifyObject(ISASLMechanism, mechanism)


def test_empty_authzid() -> None:
    """An empty initial response logs in the certificate's address."""
    step = External(WITH_CERTIFICATE).start(b"")
    assert isinstance(step, Success)
    identity = step.credentials
    assert IVerifiedIdentity.providedBy(identity)
    assert identity == VerifiedIdentity(
        username=b"john@client1.com",
        domain="client1.com",
        setting="UseCertificateAuth",
        connection=WITH_CERTIFICATE,
        mechanism="EXTERNAL",
        authzid=None,
    )


def test_challenge_then_authzid() -> None:
    """Without an initial response the server sends an empty challenge; the
    answer is the authorization identity."""
    mechanism = External(WITH_CERTIFICATE)
    assert mechanism.start(None) == Challenge(b"")
    step = mechanism.respond(b"boss@client1.com")
    assert isinstance(step, Success) and step.credentials.authzid == b"boss@client1.com"
    assert step.credentials.username == b"john@client1.com"


def test_no_certificate_fails() -> None:
    """Without a verified certificate EXTERNAL fails before the portal."""
    assert isinstance(External(PLAIN_LINK).start(b""), Failure)
    assert isinstance(External(PLAIN_LINK).start(None), Challenge)
    assert isinstance(External(PLAIN_LINK).respond(b"john"), Failure)


def test_certificate_without_address_fails() -> None:
    """A verified certificate naming no address logs nobody in."""
    nameless = dataclasses.replace(
        PLAIN_LINK, client_certificate=VerifiedCertificate(None, "client1.com", "CN=x")
    )
    assert isinstance(External(nameless).start(b""), Failure)


def test_malformed_authzid_fails() -> None:
    """An authzid with a NUL or too long is refused."""
    assert isinstance(External(WITH_CERTIFICATE).start(b"a\0b"), Failure)
    assert isinstance(External(WITH_CERTIFICATE).start(b"a" * 2000), Failure)


def test_address_from_subject_alt_name() -> None:
    """The rfc822Name of subjectAltName wins over the subject's emailAddress."""
    ca = make_ca("CA")
    both = make_client(ca, "alt@client1.com", subject_email="subject@client1.com")
    assert certificate_address(both.certificate) == "alt@client1.com"
    only_subject = make_client(ca, None, subject_email="subject@client1.com")
    assert certificate_address(only_subject.certificate) == "subject@client1.com"
    assert certificate_address(make_client(ca, None).certificate) is None


def test_verified_records_domain() -> None:
    """The facts carry the verifying domain and the subject."""
    ca = make_ca("CA")
    facts = verified(make_client(ca, "a@client1.com").certificate, "client1.com")
    assert facts.address == "a@client1.com" and facts.domain == "client1.com"
    assert "CN=a@client1.com" in facts.subject


def test_advertised_only_with_certificate() -> None:
    """EXTERNAL is listed only where a verified certificate came with the link."""
    settings = {"LoginMethods": ["PLAIN", "EXTERNAL"]}
    assert "EXTERNAL" not in registry.advertised(settings, PLAIN_LINK)
    assert "EXTERNAL" in registry.advertised(settings, WITH_CERTIFICATE, frozenset({"EXTERNAL"}))
