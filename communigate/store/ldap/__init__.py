"""The directory in an LDAP server (OpenLDAP ``slapd``), for several
front-end servers sharing one set of accounts: :mod:`.mapping` (entries
and attributes), :mod:`.connection` (where, how to bind, the pool),
:mod:`.snapshot` (the copy in memory), :mod:`.directory` (the directory
itself) and :mod:`.refresh` (keeping the copy fresh in the server)."""
