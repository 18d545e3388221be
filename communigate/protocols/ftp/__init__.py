"""FTP (RFC 959, 2228, 2389, 2428, 3659) over each account's File Storage."""
