"""XMPP client-to-server (RFC 6120, RFC 6121) and the extensions clients expect."""
