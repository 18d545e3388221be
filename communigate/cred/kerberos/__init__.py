"""Kerberos for GSSAPI logins: each domain's keys (a keytab in its Settings
folder), the keytab file format and the service name of a client's ticket."""
