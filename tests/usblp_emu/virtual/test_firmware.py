"""The canned firmwares: each answers its language's status request, split or not, and never
mistakes job data for one (except where the real printers do)."""

from __future__ import annotations

import struct

import pytest

from usblp_emu import (
    BrotherQLStatus,
    DymoStatus,
    EscPosStatus,
    Firmware,
    PaperState,
    PjlStatus,
    VirtualPrinter,
)
from usblp_emu._core._descriptors import Completion

IN = 0x82


def feed(firmware: Firmware, data: bytes, cut: int | None = None) -> list[bytes]:
    """Replies to ``data``, sent whole or cut in two at ``cut``."""
    if cut is None:
        return list(firmware.receive(data))
    return [*firmware.receive(data[:cut]), *firmware.receive(data[cut:])]


# -- ESC/POS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [None, 1, 2, 4])
def test_escpos_answers_dle_eot_even_split_across_transfers(cut):
    stream = b"\x1b@Hi\x10\x04\x01more\x10\x04\x04"
    assert feed(EscPosStatus(), stream, cut) == [b"\x12", b"\x12"]


@pytest.mark.parametrize(
    ("state", "n", "byte"),
    [
        ({"online": False}, 1, 0x1A),
        ({"cover_open": True}, 2, 0x16),
        ({"paper": "out"}, 2, 0x32),
        ({"error": True}, 3, 0x52),
        ({"paper": PaperState.NEAR_END}, 4, 0x1E),  # python-escpos's RT_MASK_LOWPAPER
        ({"paper": PaperState.OUT}, 4, 0x7E),  # & RT_MASK_NOPAPER (0x72) == 0x72
    ],
)
def test_escpos_status_bytes_follow_epsons_bits(state, n, byte):
    assert EscPosStatus(**state).receive(bytes([0x10, 0x04, n])) == [bytes([byte])]


def test_escpos_gs_r_and_unknown_requests():
    assert EscPosStatus(paper="out").receive(b"\x1dr\x01") == [b"\x0f"]
    assert EscPosStatus().receive(b"\x10\x04\x09") == []  # not a status the printer knows


# -- Brother raster -------------------------------------------------------------------------------


def test_brother_answers_the_status_request_and_each_print():
    firmware = BrotherQLStatus(media_width=62)
    job = b"\x00" * 200 + b"\x1b@" + b"\x1biS" + b"\x1biz" + bytes(10) + b"g\x00\x03\x1a\x0c\x1a"
    job += b"\x1a"  # print the last page
    replies = feed(firmware, job)
    assert [(r[18], r[19]) for r in replies] == [(0, 0), (6, 1), (1, 1), (6, 0)]
    assert all(len(r) == 32 and r[:3] == b"\x80\x20\x42" and r[10] == 62 for r in replies)
    # The 0x1A and 0x0C inside the raster line's data were data, not print commands.
    assert firmware.pages == 1


@pytest.mark.parametrize("cut", range(1, 12))
def test_brother_commands_split_anywhere(cut):
    job = b"\x1biS" + b"G" + struct.pack("<H", 3) + b"\x1a\x1a\x1a" + b"\x1a"
    firmware = BrotherQLStatus()
    assert [r[18] for r in feed(firmware, job, cut)] == [0, 6, 1, 6]
    assert firmware.pages == 1


def test_brother_reports_errors_instead_of_printing():
    replies = BrotherQLStatus(errors=(0x01, 0x00)).receive(b"\x1a")
    assert [(r[8], r[18]) for r in replies] == [(0x01, 0x02)]


# -- PJL ------------------------------------------------------------------------------------------


def test_pjl_answers_info_status_id_and_echo():
    firmware = PjlStatus(display="Ready", device="Acme Laser 1")
    job = b"\x1b%-12345X@PJL\r\n@PJL INFO STATUS\r\n@PJL INFO ID\r\n@PJL ECHO hi\r\n"
    replies = feed(firmware, job, cut=20)
    assert replies == [
        b'@PJL INFO STATUS\r\nCODE=10001\r\nDISPLAY="Ready"\r\nONLINE=TRUE\r\n\x0c',
        b'@PJL INFO ID\r\n"Acme Laser 1"\r\n\x0c',
        b"@PJL ECHO hi\r\n\x0c",
    ]


def test_pjl_is_not_parsed_inside_the_page_description_language():
    firmware = PjlStatus()
    job = b"\x1b%-12345X@PJL ENTER LANGUAGE=PCL\r\n\x1bE@PJL INFO STATUS\r\n\x1b%-123"
    assert feed(firmware, job) == []  # inside PCL: data
    # The UEL, cut across transfers, brings the PJL level back.
    assert feed(firmware, b"45X@PJL INFO ID\r\n") == [b'@PJL INFO ID\r\n"Acme Laser 1"\r\n\x0c']


# -- DYMO -----------------------------------------------------------------------------------------


def test_dymo_answers_esc_a_and_skips_line_data():
    firmware = DymoStatus()
    line = b"\x1bA\x1bA"  # data bytes that look like ESC A
    job = b"\x1bC\x00\x1bD\x04\x16" + line + b"\x16" + line + b"\x1bA"
    assert feed(firmware, job, cut=9) == [b"\x00"]
    assert firmware.lines == 2


# -- the hook in the printer ------------------------------------------------------------------


def test_the_printer_queues_replies_before_the_transfer_completes():
    printer = VirtualPrinter(firmware=EscPosStatus())
    assert printer.service(0x01, 3, b"\x10\x04\x01", 0.0, 0.0) == Completion(0, 3)
    assert printer.received == b"\x10\x04\x01"
    assert printer.service(IN, 512, b"", 0.0, 0.0) == Completion(0, 1, b"\x12")


def test_a_short_write_feeds_the_firmware_only_what_was_accepted():
    seen: list[bytes] = []

    class Recorder:
        def receive(self, data: bytes) -> list[bytes]:
            seen.append(data)
            return []

    printer = VirtualPrinter(firmware=Recorder())
    printer.inject("short")
    printer.service(0x01, 4, b"abcd", 0.0, 0.0)
    assert seen == [b"ab"]
