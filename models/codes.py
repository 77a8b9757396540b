"""Random codes people read and type: binding codes, coupon codes, referral and pickup codes."""

from __future__ import annotations

import secrets

# No 0/O, 1/I/L: members and shop staff type these from a receipt or a phone screen.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
# The largest multiple of the alphabet's size a byte can reach: bytes at or above it are
# dropped, so every character is equally likely (a plain ``byte % 31`` would favour some).
_BYTE_LIMIT = 256 - 256 % len(ALPHABET)


def random_code(length: int) -> str:
    """``length`` characters drawn uniformly from ``ALPHABET`` by the system's CSPRNG, from
    one ``urandom`` call nearly every time (``secrets.choice`` made one per character: 22
    system calls for a redemption's coupon and pickup codes)."""
    picked: list[str] = []
    while len(picked) < length:
        picked += [
            ALPHABET[b % len(ALPHABET)] for b in secrets.token_bytes(length) if b < _BYTE_LIMIT
        ]
    return "".join(picked[:length])
