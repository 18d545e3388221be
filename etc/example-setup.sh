#!/bin/sh
# An example configuration: the seed's multihoming layout.  company.com is
# the Main Domain (every address not assigned elsewhere), client1.com owns
# 192.0.2.2, client2.com owns no address (its users log in as
# user@client2.com or user%client2.com).
set -e
export COMMUNIGATE_BASE=${COMMUNIGATE_BASE:-/var/lib/communigate}
communigate init --main-domain company.com
communigate domain create client1.com --ip 192.0.2.2
communigate domain create client2.com
communigate account create info@company.com --password change-me
communigate account create info@client1.com --password change-me PasswordEncryption=UB-crpt
communigate account create j.smith@client1.com --password change-me
communigate router add '<John> = j.smith@client1.com'
communigate server settings HideAccountUnknown=YES
# Then:  twistd -n communigate --pop3 tcp:110:interface=192.0.2.1 --pop3 tcp:110:interface=192.0.2.2
