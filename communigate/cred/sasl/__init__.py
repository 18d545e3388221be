"""One SASL implementation for every protocol (RFC 4422).

A mechanism is a pure object: client bytes in, a :class:`Challenge`,
:class:`Success` (carrying credentials for the portal) or :class:`Failure`
out.  It never sees the portal, the network or a Deferred.  Framings
(:mod:`.framing`: IMAP, POP3 and SMTP's ``+ base64`` lines; XMPP's
``<challenge/>`` later) carry the bytes; :mod:`.registry` says which
mechanisms exist and which to advertise.
"""
