"""The directory of domains and accounts, mailboxes and settings files."""
