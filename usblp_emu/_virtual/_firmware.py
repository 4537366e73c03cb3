"""Printer firmware for VirtualPrinter: what a printer answers to what it is sent.

A :class:`Firmware` sees every bulk OUT transfer's bytes, in order, as the printer accepts them
and returns the replies the printer queues on its bulk IN endpoint. Real printer languages
carry their status requests in the data stream, so a program that asks for status (ESC/POS
``DLE EOT``, Brother raster ``ESC i S``, PJL ``@PJL INFO STATUS``, DYMO ``ESC A``) and waits
for the answer works against a VirtualPrinter with the matching firmware and no hand-written
thread.

Rules:
- A firmware is called with the printer's lock held, one transfer at a time, in the order the
  bytes arrived; it must not call back into the printer. It returns replies instead, which the
  printer queues before the transfer completes, so a reply is there for the very next read.
- A command may be split across transfers: each firmware keeps the unfinished tail and parses
  it with the next chunk.
- The canned firmwares parse their language's framing (command lengths, raster payloads), so a
  status request's bytes inside image data are not mistaken for one, except where the real
  printers do the same (ESC/POS real-time commands are recognised anywhere in the stream).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

__all__ = [
    "BrotherQLStatus",
    "DymoStatus",
    "EscPosStatus",
    "Firmware",
    "PaperState",
    "PjlStatus",
]


@runtime_checkable
class Firmware(Protocol):
    """What a VirtualPrinter runs on the bytes it accepts."""

    def receive(self, data: bytes) -> Iterable[bytes]:
        """The bytes one bulk OUT transfer delivered; return the replies to send back.

        Each reply is queued on the bulk IN endpoint as one message (a read gets at most one
        message, or the part of it that fits).
        """
        ...


# -- ESC/POS -------------------------------------------------------------------------------------

DLE, EOT, ESC, GS = 0x10, 0x04, 0x1B, 0x1D


class PaperState(enum.Enum):
    """The roll paper sensor of an ESC/POS printer."""

    OK = "ok"
    NEAR_END = "near-end"
    OUT = "out"


class EscPosStatus:
    """An ESC/POS receipt printer's real-time status (Epson's ``DLE EOT n``, ``GS r n``).

    ``DLE EOT n`` answers one byte, bits 1 and 4 always set (Epson's ESC/POS reference): n=1
    printer status (bit 3 off-line), 2 off-line cause (bit 2 cover open, bit 5 stopped by paper
    end, bit 6 error), 3 error cause (bit 3 autocutter, bit 5 unrecoverable, bit 6
    auto-recoverable), 4 roll paper sensor (bits 2-3 near end, bits 5-6 paper end). ``GS r 1``
    answers the paper sensor as bits 0-1 (near end) and 2-3 (end). Like the real printers it
    finds ``DLE EOT`` anywhere in the stream, inside other commands' data too.

    Attributes (change them while a program runs to change what it reads):
        online, paper, cover_open, error.

    """

    def __init__(
        self,
        *,
        online: bool = True,
        paper: PaperState | str = PaperState.OK,
        cover_open: bool = False,
        error: bool = False,
    ) -> None:
        self.online = online
        self.paper = PaperState(paper)
        self.cover_open = cover_open
        self.error = error
        self._tail = b""

    def status_byte(self, n: int) -> int | None:
        """The answer to ``DLE EOT n`` (None: not a status request the printer knows)."""
        fixed = 0x12  # bits 1 and 4
        if n == 1:
            return fixed | (0 if self.online else 0x08)
        if n == 2:
            out = self.paper is PaperState.OUT
            return (
                fixed
                | (0x04 if self.cover_open else 0)
                | (0x20 if out else 0)
                | (0x40 if self.error else 0)
            )
        if n == 3:
            return fixed | (0x40 if self.error else 0)
        if n == 4:
            near = self.paper in (PaperState.NEAR_END, PaperState.OUT)
            return fixed | (0x0C if near else 0) | (0x60 if self.paper is PaperState.OUT else 0)
        return None

    def receive(self, data: bytes) -> list[bytes]:
        """Answer each ``DLE EOT n`` and ``GS r 1`` in ``data``."""
        stream = self._tail + data
        replies: list[bytes] = []
        i = 0
        while i < len(stream):
            byte = stream[i]
            if byte in (DLE, GS) and i + 2 >= len(stream):
                break  # a command cut by the transfer's end: wait for the rest
            if byte == DLE and stream[i + 1] == EOT:
                answer = self.status_byte(stream[i + 2])
                if answer is not None:
                    replies.append(bytes([answer]))
                    i += 3
                    continue
            if byte == GS and stream[i + 1] == ord("r") and stream[i + 2] in (1, 49):
                near = self.paper in (PaperState.NEAR_END, PaperState.OUT)
                out = self.paper is PaperState.OUT
                replies.append(bytes([(0x03 if near else 0) | (0x0C if out else 0)]))
                i += 3
                continue
            i += 1
        self._tail = stream[i:]
        return replies


# -- Brother raster (QL label printers, PT P-touch) ------------------------------------------------

# ESC i <letter> -> the number of parameter bytes that follow (Brother's raster command
# reference for the QL and PT series).
_ESC_I_PARAMS = {
    ord("a"): 1,  # switch dynamic command mode
    ord("!"): 1,  # automatic status notification
    ord("z"): 10,  # print information
    ord("M"): 1,  # various mode
    ord("A"): 1,  # cut every n labels
    ord("K"): 1,  # expanded mode
    ord("d"): 2,  # margin amount
    ord("R"): 1,  # PT: switch dynamic command mode (older models)
    ord("S"): 0,  # status information request
    ord("r"): 1,  # PT: raster mode
}


class BrotherQLStatus:
    """A Brother QL (or PT) label printer's 32-byte status replies.

    Answers ``ESC i S`` with a "reply to status request", and each print command (``FF``
    between pages, ``SUB`` at the end) the way the printers do: "phase change" to printing,
    "printing completed", "phase change" to waiting to receive. Raster lines (``g``, ``w``,
    ``G``) and the other commands are skipped by their lengths, so their data is never read as
    commands.

    Args:
        series, model: bytes 3 and 4 of the reply (0x34, 0x38: a QL-800).
        media_width: mm (62); media_length: mm, 0 for continuous tape.
        media_type: 0x0A continuous length tape, 0x0B die-cut labels, 0 no media.
        errors: the two error information bytes (8 and 9) as ``(info1, info2)``.

    """

    def __init__(
        self,
        *,
        series: int = 0x34,
        model: int = 0x38,
        media_width: int = 62,
        media_length: int = 0,
        media_type: int = 0x0A,
        errors: tuple[int, int] = (0, 0),
    ) -> None:
        self.series = series
        self.model = model
        self.media_width = media_width
        self.media_length = media_length
        self.media_type = media_type
        self.errors = errors
        self.pages = 0  # print commands seen
        self._tail = b""

    def reply(self, status_type: int, phase: int = 0) -> bytes:
        """One 32-byte status message (status type: 0 reply, 1 printed, 2 error, 6 phase)."""
        body = bytearray(32)
        body[0:8] = bytes([0x80, 0x20, 0x42, self.series, self.model, 0x30, 0x30, 0x00])
        body[8], body[9] = self.errors
        body[10], body[11], body[17] = self.media_width, self.media_type, self.media_length
        body[18], body[19] = status_type, phase
        return bytes(body)

    def _printed(self) -> list[bytes]:
        self.pages += 1
        if any(self.errors):
            return [self.reply(0x02)]
        return [self.reply(0x06, 1), self.reply(0x01, 1), self.reply(0x06, 0)]

    def receive(self, data: bytes) -> list[bytes]:
        """Answer the status requests and print commands in ``data``."""
        stream = self._tail + data
        replies: list[bytes] = []
        i = 0
        while i < len(stream):
            size = _brother_length(stream, i)
            if size is None:
                break  # cut by the transfer's end
            if stream[i] in (0x0C, 0x1A):
                replies += self._printed()
            elif stream[i : i + 3] == b"\x1biS":
                replies.append(self.reply(0x00))
            i += size
        self._tail = stream[i:]
        return replies


def _brother_length(s: bytes, i: int) -> int | None:
    """The length of the raster command at ``s[i]``, or None if ``s`` ends inside it."""
    op, left = s[i], len(s) - i
    size: int | None = 1  # print, invalidate (0x00), zero raster line (Z), anything unknown
    if op in (ord("g"), ord("w")):  # g/w, one byte, length, data
        size = 3 + s[i + 2] if left >= 3 else None
    elif op == ord("G"):  # PT: G, little-endian length, data
        size = 3 + struct.unpack_from("<H", s, i + 1)[0] if left >= 3 else None
    elif op == ord("M"):
        size = 2
    elif op == ESC:
        second = s[i + 1] if left >= 2 else None
        third = s[i + 2] if left >= 3 else None
        fourth = s[i + 3] if left >= 4 else None
        if second is None or (second == ord("i") and third is None):
            size = None
        elif second == ord("@"):
            size = 2
        elif second != ord("i"):
            size = 1
        elif third == ord("U"):  # ESC i U w 01 + 127 bytes, ESC i U J + 14 bytes
            size = None if fourth is None else (5 + 127 if fourth == ord("w") else 4 + 14)
        elif third == ord("X"):  # ESC i X G: request the configuration file
            size = 4
        else:
            assert third is not None
            size = 3 + _ESC_I_PARAMS.get(third, 0)
    return None if size is None or size > left else size


# -- PJL ------------------------------------------------------------------------------------------

UEL = b"\x1b%-12345X"


class PjlStatus:
    """A PJL printer: ``@PJL INFO STATUS``, ``@PJL INFO ID`` and ``@PJL ECHO`` answered.

    Every answer repeats the request line, then its lines, then a form feed, as HP's PJL
    reference shows. Commands count at the PJL level only: at the start and after each
    Universal Exit Language; ``@PJL ENTER LANGUAGE`` or any line that is not PJL switches to
    the page description language until the next UEL, so job data is never parsed.

    Args:
        code: the status code (10001: ready), display: the panel text, online.
        device: the ``INFO ID`` answer (the printer's model name).

    """

    def __init__(
        self,
        *,
        code: int = 10001,
        display: str = "Ready",
        online: bool = True,
        device: str = "Acme Laser 1",
    ) -> None:
        self.code = code
        self.display = display
        self.online = online
        self.device = device
        self._pjl = True  # at the PJL command level
        self._tail = b""

    def _answer(self, line: bytes) -> bytes | None:
        words = line.decode("latin-1").split()
        upper = [w.upper() for w in words]
        head = line.rstrip(b"\r") + b"\r\n"
        if upper[1:3] == ["INFO", "STATUS"]:
            online = "TRUE" if self.online else "FALSE"
            body = f'CODE={self.code}\r\nDISPLAY="{self.display}"\r\nONLINE={online}\r\n'
            return head + body.encode("latin-1") + b"\x0c"
        if upper[1:3] == ["INFO", "ID"]:
            return head + f'"{self.device}"\r\n'.encode("latin-1") + b"\x0c"
        if upper[1:2] == ["ECHO"]:
            return head + b"\x0c"
        return None

    def receive(self, data: bytes) -> list[bytes]:
        """Answer the PJL requests in ``data``."""
        stream = self._tail + data
        replies: list[bytes] = []
        while stream:
            if not self._pjl:
                at = stream.find(UEL)
                if at < 0:
                    # Keep what could be the start of a UEL cut by the transfer's end.
                    keep = max(
                        (k for k in range(1, len(UEL)) if stream.endswith(UEL[:k])), default=0
                    )
                    stream = stream[len(stream) - keep :]
                    break
                stream = stream[at + len(UEL) :]
                self._pjl = True
            elif stream.startswith(UEL):
                stream = stream[len(UEL) :]
            elif UEL.startswith(stream) or b"@PJL".startswith(stream):
                break  # an incomplete UEL or command: wait for the rest
            elif stream[:1] in (b"\r", b"\n"):
                stream = stream[1:]  # blank lines between commands
            elif not stream.startswith(b"@PJL"):
                self._pjl = False  # the job's data: a PDL until the next UEL
            else:
                end = stream.find(b"\n")
                if end < 0:
                    break
                line, stream = stream[:end], stream[end + 1 :]
                if line.upper().split()[1:2] == [b"ENTER"]:
                    self._pjl = False
                answer = self._answer(line)
                if answer is not None:
                    replies.append(answer)
        self._tail = stream
        return replies


# -- DYMO LabelManager ---------------------------------------------------------------------------

SYN = 0x16
# ESC <letter> -> parameter bytes (DYMO LabelManager / LabelWriter technical references).
_DYMO_PARAMS = {ord("A"): 0, ord("B"): 1, ord("C"): 1, ord("D"): 1, ord("E"): 0, ord("G"): 0}


class DymoStatus:
    """A DYMO LabelManager: ``ESC A`` answered with one status byte (0: ready).

    Print lines are ``SYN`` followed by the line's bytes, as many as the last ``ESC D n``
    said, so their data is skipped, never read as commands.
    """

    def __init__(self, *, status: int = 0) -> None:
        self.status = status
        self.lines = 0  # print lines received
        self._bytes_per_line = 0
        self._tail = b""

    def receive(self, data: bytes) -> list[bytes]:
        """Answer each ``ESC A`` in ``data``."""
        s = self._tail + data
        replies: list[bytes] = []
        i = 0
        while i < len(s):
            if s[i] == SYN:
                if len(s) - i < 1 + self._bytes_per_line:
                    break
                self.lines += 1
                i += 1 + self._bytes_per_line
                continue
            if s[i] != ESC:
                i += 1  # padding (0x00) and anything unknown
                continue
            if len(s) - i < 2:
                break
            size = 2 + _DYMO_PARAMS.get(s[i + 1], 0)
            if len(s) - i < size:
                break
            if s[i + 1] == ord("A"):
                replies.append(bytes([self.status]))
            elif s[i + 1] == ord("D"):
                self._bytes_per_line = s[i + 2]
            i += size
        self._tail = s[i:]
        return replies
