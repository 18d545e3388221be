"""SMTP submission (RFC 6409, RFC 8314): parser, server, queue and relay."""
