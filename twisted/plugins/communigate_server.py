"""The ``communigate`` twistd plugin; the work happens in communigate.tap."""

from twisted.application.service import ServiceMaker

communigate = ServiceMaker(
    "communigate",
    "communigate.tap",
    "POP3 (and more) access for the accounts of many mail domains",
    "communigate",
)
