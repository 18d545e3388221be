"""communigate: POP3, IMAP4, FTP, TFTP and XMPP access for the accounts of many
mail domains, through one authentication core modelled on CommuniGate Pro."""

__version__ = "0.1.0"
