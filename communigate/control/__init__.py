"""The control socket: the running server answers the ``communigate``
command (live sessions, kick, status, reload) over a UNIX socket in the base
directory.

:mod:`.requests` parses and formats the wire (one JSON object per line, no
I/O), :mod:`.sessions` keeps the table of logged-in sessions,
:mod:`.commands` answers requests, :mod:`.server` is the Twisted listener,
:mod:`.client` the blocking client the command line uses and :mod:`.admin`
its subcommands.
"""
