"""IMAP4rev1 (RFC 3501) and its extensions: sans-IO reading and formatting,
and a Twisted server."""
