"""Replay tokens: a schedule as the few places where it left the default choice.

A schedule is fully determined by its deviations: at decision point ``i`` (a checkpoint where
more than one thread could run) run thread ``t`` instead of the default (the current thread if
it can run, else the lowest-numbered runnable one). A token is ``hz1-`` followed by base32 of
the varint-encoded pairs (gap since the previous deviation, thread id): short, pasteable,
independent of Python version and of the search mode that found it.
"""

from __future__ import annotations

import base64
import binascii

from hazard._errors import HazardUsageError

__all__ = ["decode", "encode"]

PREFIX = "hz1-"


def _varint(n: int, out: bytearray) -> None:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def encode(deviations: list[tuple[int, int]]) -> str:
    """Encode ``[(decision_index, thread_id), ...]`` (increasing indices) as a token."""
    out = bytearray()
    previous = -1
    for index, tid in deviations:
        if index <= previous:
            raise ValueError("deviation indices must increase")
        _varint(index - previous - 1, out)
        _varint(tid, out)
        previous = index
    return PREFIX + base64.b32encode(bytes(out)).decode("ascii").rstrip("=").lower()


def decode(token: str) -> list[tuple[int, int]]:
    """Decode a token made by :func:`encode`.

    Raises:
        HazardUsageError: the text is not a replay token.

    """
    if not isinstance(token, str) or not token.startswith(PREFIX):
        raise HazardUsageError(f"not a replay token (they start with {PREFIX!r}): {token!r}")
    body = token[len(PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise HazardUsageError(f"corrupt replay token: {token!r}") from None
    numbers: list[int] = []
    value = shift = 0
    for byte in raw:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            numbers.append(value)
            value = shift = 0
    if shift or len(numbers) % 2:
        raise HazardUsageError(f"corrupt replay token: {token!r}")
    deviations: list[tuple[int, int]] = []
    index = -1
    for gap, tid in zip(numbers[::2], numbers[1::2], strict=True):
        index += gap + 1
        deviations.append((index, tid))
    return deviations
