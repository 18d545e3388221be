"""The HTTP module (spec §9, issue 15): WebUser login, web sessions whose
IDs the SESSIONID method accepts, and File Storage over HTTP and WebDAV,
on twisted.web behind the one portal."""
