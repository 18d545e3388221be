"""MD4 (RFC 1320), for the NTLM NT hash (MS-NLMP §3.3.1) and nothing else.

Written here because ``hashlib.new("md4")`` fails where OpenSSL 3 leaves
its legacy provider off (the usual case), and pyspnego's MD4 lives in a
private module (``spnego._ntlm_raw.md4``) that may change without notice.
MD4 is broken as a general hash; the NT hash is fixed by the protocol.
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF
#: RFC 1320 §3.4: the order words are taken in rounds 2 and 3.
_ROUND2 = (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
_ROUND3 = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
_SHIFTS = ((3, 7, 11, 19), (3, 5, 9, 13), (3, 9, 11, 15))


def _rotate(value: int, count: int) -> int:
    value &= _MASK
    return ((value << count) | (value >> (32 - count))) & _MASK


def _block(state: list[int], words: tuple[int, ...]) -> None:
    """RFC 1320 §3.4: fold one 64-byte block into ``state``."""
    a, b, c, d = state
    rounds = (
        (range(16), lambda x, y, z: (x & y) | (~x & z), 0),
        (_ROUND2, lambda x, y, z: (x & y) | (x & z) | (y & z), 0x5A827999),
        (_ROUND3, lambda x, y, z: x ^ y ^ z, 0x6ED9EBA1),
    )
    for (order, function, constant), shifts in zip(rounds, _SHIFTS, strict=True):
        for step, index in enumerate(order):
            a = _rotate(a + function(b, c, d) + words[index] + constant, shifts[step % 4])
            a, b, c, d = d, a, b, c
    for position, value in enumerate((a, b, c, d)):
        state[position] = (state[position] + value) & _MASK


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data`` (RFC 1320 §3)."""
    padding = b"\x80" + b"\x00" * ((55 - len(data)) % 64)
    message = data + padding + struct.pack("<Q", (len(data) * 8) & 0xFFFFFFFFFFFFFFFF)
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for offset in range(0, len(message), 64):
        _block(state, struct.unpack("<16I", message[offset : offset + 64]))
    return struct.pack("<4I", *state)
