"""TFTP (RFC 1350, 2347, 2348, 2349, 7440): sans-IO packets and transfers, and a UDP server."""
