#!/bin/sh
# An example configuration: the seed's multihoming layout.  company.com is
# the Main Domain (every address not assigned elsewhere), client1.com owns
# 192.0.2.2, client2.com owns no address (its users log in as
# user@client2.com or user%client2.com).
# Running it again changes nothing: what exists already is left alone.
set -e
export COMMUNIGATE_BASE=${COMMUNIGATE_BASE:-/var/lib/communigate}

domain() {  # domain NAME [OPTIONS...]: create it unless it exists
    communigate domain list | grep -qxF "$1" || communigate domain create "$@"
}
account() {  # account NAME@DOMAIN [OPTIONS...]: create it unless it exists
    communigate account list "${1#*@}" | grep -qxF "$1" || communigate account create "$@"
}

communigate init --main-domain company.com --if-missing
domain client1.com --ip 192.0.2.2
domain client2.com
account info@company.com --password change-me
account info@client1.com --password change-me PasswordEncryption=UB-crpt
account j.smith@client1.com --password change-me
communigate router show | grep -qxF '<John> = j.smith@client1.com' \
    || communigate router add '<John> = j.smith@client1.com'
communigate server settings HideAccountUnknown=YES
# Then:  twistd -n communigate --pop3 tcp:110:interface=192.0.2.1 --pop3 tcp:110:interface=192.0.2.2
