"""Worker processes: IMAP and POP3 sessions on every core (``--workers N``).

One Python process answers its sessions on one core.  With ``--workers N``
the server (:mod:`communigate.tap`) binds its listeners as always and
starts N worker processes (:mod:`.child`); each IMAP or POP3 connection
its TCP listeners accept is passed, as a file descriptor over a Unix
socket (:mod:`.channel`), to the ready worker serving the fewest
(:mod:`.handoff`, :mod:`.pool`).  The worker serves it from the first byte
with the same login core and protocol code as the server.

What must be one for all processes stays one: the listeners' Grant/Deny
lists and connections per address are applied where connections are
accepted; failed-login counters are passed between processes; the
sessions listing and ``kick`` reach every worker; every worker's log
events reach the server's log; mailbox changes reach every process through
inotify, as the command line's do.  Everything else (LMTP, FTP, TFTP,
XMPP, HTTP, submission, the control socket, and IMAP or POP3 listeners
that are not plain TCP) is served by the server process as without
workers.
"""
