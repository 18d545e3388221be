#!/usr/bin/env bash
# Install communigate into .venv and start it in the foreground on its
# embedded default: base directory ./communigate-base (created on first
# start; the generated postmaster password is printed once), POP3, IMAP and
# FTP on loopback ports that need no root.  Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. etc/venv.sh
.venv/bin/python -m pip install -q --disable-pip-version-check .
echo "communigate: POP3 127.0.0.1:1100, IMAP 127.0.0.1:1143, FTP 127.0.0.1:2121"
exec .venv/bin/twistd -n communigate --base ./communigate-base \
    --pop3 tcp:1100:interface=127.0.0.1 \
    --imap4 tcp:1143:interface=127.0.0.1 \
    --ftp tcp:2121:interface=127.0.0.1
