"""LMTP (RFC 2033): delivery from an MTA into the mail store."""
