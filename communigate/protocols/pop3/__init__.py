"""POP3 (RFC 1939, RFC 2449): a sans-IO command parser and a Twisted server."""
