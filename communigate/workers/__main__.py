"""``python -m communigate.workers OPTIONS``: one worker process
(:mod:`communigate.workers.child`).

Until the server says stop, SIGINT and SIGTERM are the server's: a
terminal or a supervisor may send them to the whole process group.  They
are ignored here first of all, before the imports that take a moment.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)

from communigate.workers.child import main  # noqa: E402 (the signals come first)

main()
