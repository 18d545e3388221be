#!/usr/bin/env bash
# Install communigate into .venv and start it in the foreground on its
# embedded default: base directory ./communigate-base (created on first
# start; the generated postmaster password is printed once), POP3, IMAP and
# FTP on loopback ports that need no root (1100, 1143, 2121; the variables
# POP3_PORT, IMAP_PORT and FTP_PORT choose others).  Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. etc/venv.sh
.venv/bin/python -m pip install -q --disable-pip-version-check .
pop3=${POP3_PORT:-1100} imap=${IMAP_PORT:-1143} ftp=${FTP_PORT:-2121}
echo "communigate: POP3 127.0.0.1:$pop3, IMAP 127.0.0.1:$imap, FTP 127.0.0.1:$ftp"
exec .venv/bin/twistd -n communigate --base ./communigate-base \
    --pop3 "tcp:$pop3:interface=127.0.0.1" \
    --imap4 "tcp:$imap:interface=127.0.0.1" \
    --ftp "tcp:$ftp:interface=127.0.0.1"
