"""IEEE 1284 Device ID parsing, the port status byte and the CUPS URI."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usblp_emu._ieee1284 import (
    DeviceId,
    MalformedDeviceId,
    PortStatus,
    cups_uri,
    parse_device_id,
)
from usblp_emu._virtual._printer import DEFAULT_DEVICE_ID, encode_device_id

HP = "MFG:HP;MDL:LaserJet 1020;CMD:ZJS,PJL;CLS:PRINTER;SN:ABC123;DES:HP LaserJet 1020;"


def big(text: bytes, length: int | None = None) -> bytes:
    """The answer with a big-endian length (default: the right one)."""
    n = len(text) + 2 if length is None else length
    return n.to_bytes(2, "big") + text


def little(text: bytes, length: int | None = None) -> bytes:
    """The answer with a little-endian length (default: the right one)."""
    n = len(text) + 2 if length is None else length
    return n.to_bytes(2, "little") + text


# -- the length field ---------------------------------------------------------------------


def test_well_formed_big_endian_answer():
    answer = big(HP.encode())
    dev = parse_device_id(answer)
    assert dev.raw == answer
    assert dev.text == HP
    assert dev.byte_order == "big"
    assert dev.truncated is False
    assert dev.manufacturer == "HP"
    assert dev.model == "LaserJet 1020"
    assert dev.command_set == ("ZJS", "PJL")
    assert dev.device_class == "PRINTER"
    assert dev.serial == "ABC123"
    assert dev.description == "HP LaserJet 1020"
    assert dict(dev.fields) == {
        "MFG": "HP",
        "MDL": "LaserJet 1020",
        "CMD": "ZJS,PJL",
        "CLS": "PRINTER",
        "SN": "ABC123",
        "DES": "HP LaserJet 1020",
    }


def test_the_length_bounds_the_text_and_the_rest_of_the_buffer_is_ignored():
    body = b"MFG:Acme;MDL:Laser 1;"
    # usblp asks for 1024 bytes; a printer may leave junk after the ID it announced.
    answer = big(body) + b"JUNK:yes;" + b"\x00" * 20
    dev = parse_device_id(answer)
    assert dev.text == body.decode()
    assert "JUNK" not in dev.fields
    assert dev.byte_order == "big"
    assert dev.truncated is False


def test_little_endian_length_is_read_when_big_endian_does_not_fit():
    body = b"MFG:Acme;MDL:Laser 1;CMD:PCL;"
    answer = little(body)  # e.g. 0x1f 0x00: big-endian 0x1f00 is far beyond the answer
    assert int.from_bytes(answer[:2], "big") > len(answer)
    dev = parse_device_id(answer)
    assert dev.byte_order == "little"
    assert dev.truncated is False
    assert dev.text == body.decode()
    assert dev.manufacturer == "Acme"
    assert dev.model == "Laser 1"


def test_little_endian_length_bounds_the_text_too():
    body = b"MFG:Acme;MDL:Laser 1;"
    dev = parse_device_id(little(body) + b"TRAILING:junk;")
    assert dev.byte_order == "little"
    assert dev.text == body.decode()
    assert "TRAILING" not in dev.fields


def test_big_endian_under_14_with_a_plausible_little_endian_reading_is_little_endian():
    # 0x00 0x05: big-endian 5 (< 14), little-endian 0x0500 = 1280, which fits 1300 bytes.
    body = b"MFG:Acme;MDL:Y;" + b"y" * 1263
    answer = (1280).to_bytes(2, "little") + body + b"\x00" * 20
    assert int.from_bytes(answer[:2], "big") == 5
    assert len(answer) == 1300
    dev = parse_device_id(answer)
    assert dev.byte_order == "little"
    assert dev.truncated is False
    assert dev.model == "Y"
    assert dev.text == body.decode()


def test_big_endian_wins_when_both_readings_are_plausible():
    # 0x01 0x02: big-endian 258, little-endian 513; both fit a 600-byte answer.
    body = b"MFG:Acme;MDL:Z;" + b"z" * 241
    answer = (258).to_bytes(2, "big") + body + b"w" * 342
    assert len(answer) == 600
    assert int.from_bytes(answer[:2], "little") == 513
    dev = parse_device_id(answer)
    assert dev.byte_order == "big"
    assert dev.text == body.decode()


def test_a_short_length_in_either_order_never_cuts_the_id_off():
    # 2 <= length < 14, no plausible reading: the whole answer is the ID (a short length
    # would only throw real pairs away), and nothing claimed more than came.
    dev = parse_device_id(big(b"MFG:A;"))
    assert dev.byte_order == "big"
    assert dev.truncated is False
    assert dev.text == "MFG:A;"
    assert dev.manufacturer == "A"
    for field in (b"\x00\x02", b"\x00\x05", b"\x05\x00"):
        dev = parse_device_id(field + b"MFG:A;MDL:B;")
        assert dev.text == "MFG:A;MDL:B;"
        assert (dev.manufacturer, dev.model) == ("A", "B")
        assert dev.truncated is False


@pytest.mark.parametrize("length_field", [b"\x00\x00", b"\x00\x01"])
def test_length_0_or_1_in_the_field_reads_the_whole_answer(length_field):
    # Neither reading is plausible and none claims more than is there: take what was sent.
    body = b"MFG:Acme;MDL:Laser 1;"
    dev = parse_device_id(length_field + body)
    assert dev.text == body.decode()
    assert dev.truncated is False
    assert dev.byte_order == "big"
    assert dev.manufacturer == "Acme"
    assert dev.model == "Laser 1"


@pytest.mark.parametrize("length_field", [b"\x00\x00", b"\x00\x01"])
def test_length_0_or_1_with_nothing_after_it_is_an_empty_id(length_field):
    dev = parse_device_id(length_field)
    assert dev.text == ""
    assert dev.truncated is False
    assert dev.manufacturer is None


@pytest.mark.parametrize("answer", [b"", b"\x00", b"\x20", bytearray(b"\x01")])
def test_an_answer_too_short_for_its_length_is_malformed(answer):
    with pytest.raises(MalformedDeviceId, match="cannot hold its 2-byte length") as info:
        parse_device_id(answer)
    assert type(info.value) is MalformedDeviceId
    assert isinstance(info.value, ValueError)


def test_a_length_beyond_the_answer_is_clamped_and_flagged_truncated():
    body = b"MFG:Acme;MDL:Laser 1;CMD:PCL"
    answer = big(body, length=500)  # 0x01f4: little-endian 0xf401 does not fit either
    dev = parse_device_id(answer)
    assert dev.truncated is True
    assert dev.text == body.decode()
    assert dev.raw == answer
    assert dev.manufacturer == "Acme"
    assert dev.command_set == ("PCL",)


def test_truncated_only_when_the_length_claims_more_than_was_sent():
    assert parse_device_id(b"\xff\xffMFG:A;").truncated is True
    assert parse_device_id(b"\x00\x03").truncated is True  # claims one byte of text, has none
    assert parse_device_id(b"\x00\x03").text == ""
    assert parse_device_id(big(b"MFG:A;")).truncated is False


# -- decoding -----------------------------------------------------------------------------


def test_utf8_text_is_decoded_as_utf8():
    body = "MFG:Société Générale;MDL:Imprimante é;".encode()
    dev = parse_device_id(big(body))
    assert dev.manufacturer == "Société Générale"
    assert dev.model == "Imprimante é"


def test_invalid_utf8_falls_back_to_latin1_without_raising():
    body = "MFG:Société;MDL:Modèle\xff;".encode("latin-1")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    dev = parse_device_id(big(body))
    assert dev.text == "MFG:Société;MDL:Modèle\xff;"
    assert dev.manufacturer == "Société"
    assert dev.model == "Modèle\xff"


def test_a_utf8_sequence_cut_by_the_length_falls_back_to_latin1():
    body = "MFG:Acme;MDL:é".encode()  # ends b"\xc3\xa9"
    answer = big(body, length=len(body) + 1) + b"rest"  # keeps \xc3, drops \xa9
    assert int.from_bytes(answer[:2], "big") >= 14
    dev = parse_device_id(answer)
    assert dev.text == "MFG:Acme;MDL:\xc3"


def test_trailing_nuls_are_dropped_from_the_text():
    body = b"MFG:Acme;MDL:Laser 1;" + b"\x00" * 10
    dev = parse_device_id(big(body))
    assert dev.text == "MFG:Acme;MDL:Laser 1;"
    assert dev.raw.endswith(b"\x00" * 10)
    # A trailing NUL inside the last value (no final ';') does not end up in the value either.
    dev = parse_device_id(big(b"MFG:Acme;MDL:Laser 1\x00\x00\x00"))
    assert dev.model == "Laser 1"


def test_an_all_nul_id_is_empty():
    dev = parse_device_id(big(b"\x00" * 30))
    assert dev.text == ""
    assert dict(dev.fields) == {}


# -- fields and aliases -------------------------------------------------------------------


def test_missing_keys_give_none_and_an_empty_command_set():
    dev = parse_device_id(big(b"CLS:PRINTER;FOO:bar;"))
    assert dev.manufacturer is None
    assert dev.model is None
    assert dev.serial is None
    assert dev.description is None
    assert dev.command_set == ()
    assert dev.device_class == "PRINTER"
    assert dev.fields["FOO"] == "bar"


@pytest.mark.parametrize(
    ("text", "attr", "expected"),
    [
        ("MFG:Epson;", "manufacturer", "Epson"),
        ("MANUFACTURER:Epson;", "manufacturer", "Epson"),
        ("MDL:Stylus;", "model", "Stylus"),
        ("MODEL:Stylus;", "model", "Stylus"),
        ("SN:X1;", "serial", "X1"),
        ("SERN:X1;", "serial", "X1"),
        ("SERIALNUMBER:X1;", "serial", "X1"),
        ("DES:An inkjet;", "description", "An inkjet"),
        ("DESCRIPTION:An inkjet;", "description", "An inkjet"),
        ("CLS:PRINTER;", "device_class", "PRINTER"),
        ("CLASS:PRINTER;", "device_class", "PRINTER"),
    ],
)
def test_aliases(text, attr, expected):
    dev = parse_device_id(big(text.encode()))
    assert getattr(dev, attr) == expected


@pytest.mark.parametrize(
    "text",
    ["CMD:ESCPL2,BDC;", "COMMAND SET:ESCPL2,BDC;", "COMMANDSET:ESCPL2,BDC;"],
)
def test_command_set_aliases(text):
    assert parse_device_id(big(text.encode())).command_set == ("ESCPL2", "BDC")


def test_long_forms_win_over_short_ones_and_empty_values_fall_through():
    dev = parse_device_id(big(b"MFG:Short;MANUFACTURER:Long;MDL:;MODEL:Real;"))
    assert dev.manufacturer == "Long"
    assert dev.model == "Real"  # MODEL is preferred anyway
    dev = parse_device_id(big(b"MANUFACTURER:;MFG:Short;"))
    assert dev.manufacturer == "Short"  # an empty long form does not hide the short one
    dev = parse_device_id(big(b"MFG:;MDL:   ;"))
    assert dev.manufacturer is None
    assert dev.model is None


def test_key_case_and_whitespace_are_normalised_values_are_stripped():
    dev = parse_device_id(
        big(b"  mfg : Hewlett-Packard ;Mdl:  DeskJet 500\t; command set : PCL3 ;")
    )
    assert dict(dev.fields) == {
        "MFG": "Hewlett-Packard",
        "MDL": "DeskJet 500",
        "COMMAND SET": "PCL3",
    }
    assert dev.manufacturer == "Hewlett-Packard"
    assert dev.model == "DeskJet 500"
    assert dev.command_set == ("PCL3",)


def test_value_case_is_kept():
    assert parse_device_id(big(b"MDL:LaserJet pro;")).model == "LaserJet pro"


def test_a_duplicate_key_keeps_its_first_value():
    dev = parse_device_id(big(b"MFG:First;MDL:M;mfg:Second;MFG:Third;"))
    assert dev.fields["MFG"] == "First"
    assert dev.manufacturer == "First"


def test_a_duplicate_key_keeps_its_first_value_even_when_empty():
    dev = parse_device_id(big(b"MFG:;MFG:Later;"))
    assert dev.fields["MFG"] == ""
    assert dev.manufacturer is None


def test_pairs_without_a_colon_or_key_are_ignored():
    dev = parse_device_id(big(b"GARBAGE;MFG:Acme;;  ;:novalue;MDL:M;JUSTTEXT"))
    assert dict(dev.fields) == {"MFG": "Acme", "MDL": "M"}


def test_a_value_may_contain_colons():
    dev = parse_device_id(big(b"URL:http://printer.local:631/ipp;MFG:A;"))
    assert dev.fields["URL"] == "http://printer.local:631/ipp"


def test_a_final_pair_without_a_semicolon_is_kept():
    dev = parse_device_id(big(b"MFG:Acme;MDL:Laser 1"))
    assert dev.model == "Laser 1"


def test_command_set_is_split_on_commas_and_stripped():
    dev = parse_device_id(big(b"CMD: PCL 6 , PJL,,POSTSCRIPT ,  , URF;"))
    assert dev.command_set == ("PCL 6", "PJL", "POSTSCRIPT", "URF")


def test_fields_are_read_only_and_the_id_is_frozen():
    dev = parse_device_id(big(b"MFG:Acme;"))
    assert isinstance(dev.fields, MappingProxyType)
    with pytest.raises(TypeError):
        dev.fields["MFG"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        dev.text = "x"  # type: ignore[misc]


def test_a_default_device_id_has_no_fields():
    dev = DeviceId(raw=b"", text="")
    assert dict(dev.fields) == {}
    assert dev.byte_order == "big"
    assert dev.truncated is False
    assert dev.manufacturer is None
    assert dev.command_set == ()


def test_the_virtual_printers_default_id_parses():
    dev = parse_device_id(encode_device_id(DEFAULT_DEVICE_ID))
    assert dev.text == DEFAULT_DEVICE_ID
    assert dev.manufacturer == "Acme"
    assert dev.model == "Laser 1"
    assert dev.command_set == ("PCL", "PJL")
    assert dev.device_class == "PRINTER"


# -- properties ---------------------------------------------------------------------------

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=600)


@given(PRINTABLE)
def test_encode_then_parse_round_trips_printable_ascii(text):
    dev = parse_device_id(encode_device_id(text))
    assert dev.text == text
    assert dev.byte_order == "big"
    assert dev.truncated is False


KEY = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)
VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";"),
    max_size=40,
)


@given(st.dictionaries(KEY, VALUE, max_size=10))
def test_encoded_pairs_come_back_as_fields(pairs):
    text = "".join(f"{k}:{v};" for k, v in pairs.items())
    assert dict(parse_device_id(encode_device_id(text)).fields) == pairs


@given(st.binary(min_size=2, max_size=2048))
def test_parse_never_raises_on_two_bytes_or_more(answer):
    dev = parse_device_id(answer)
    assert dev.raw == answer
    assert isinstance(dev.text, str)
    assert len(dev.text) <= len(answer) - 2
    assert not dev.text.endswith("\x00")
    assert dev.byte_order in ("big", "little")
    # Every derived property works on whatever came back.
    for attr in ("manufacturer", "model", "serial", "description", "device_class"):
        value = getattr(dev, attr)
        assert value is None or isinstance(value, str)
    assert isinstance(dev.command_set, tuple)
    if dev.truncated:
        assert int.from_bytes(answer[:2], "big") > len(answer)


@given(st.binary(max_size=1))
def test_parse_always_raises_malformed_below_two_bytes(answer):
    with pytest.raises(MalformedDeviceId):
        parse_device_id(answer)


# -- port status --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "paper_empty", "selected", "no_error", "text"),
    [
        (0x18, False, True, True, "on-line, no error"),
        (0x00, False, False, False, "off-line, error"),
        (0x38, True, True, True, "on-line, paper out, no error"),
        (0x30, True, True, False, "on-line, paper out, error"),
        (0x20, True, False, False, "off-line, paper out, error"),
        (0x08, False, False, True, "off-line, no error"),
        (0x10, False, True, False, "on-line, error"),
        (0xC7, False, False, False, "off-line, error"),  # other bits mean nothing here
        (0xFF, True, True, True, "on-line, paper out, no error"),
    ],
)
def test_port_status_bits(raw, paper_empty, selected, no_error, text):
    status = PortStatus(raw)
    assert status.raw == raw
    assert status.paper_empty is paper_empty
    assert status.selected is selected
    assert status.no_error is no_error
    assert status.describe() == text


def test_port_status_is_a_frozen_value():
    assert PortStatus(0x18) == PortStatus(0x18)
    assert PortStatus(0x18) != PortStatus(0x38)
    with pytest.raises(AttributeError):
        PortStatus(0x18).raw = 0  # type: ignore[misc]


# -- CUPS URI -----------------------------------------------------------------------------


def test_cups_uri_plain():
    assert cups_uri("HP", "LaserJet", "ABC123") == "usb://HP/LaserJet?serial=ABC123"


def test_cups_uri_quotes_spaces_slashes_and_more():
    uri = cups_uri("Hewlett Packard", "LaserJet 1020/1022", "A/B C?&=")
    assert uri == "usb://Hewlett%20Packard/LaserJet%201020%2F1022?serial=A%2FB%20C%3F%26%3D"
    assert uri.count("/") == 3  # usb:// and the one between make and model


def test_cups_uri_quotes_non_ascii_as_utf8():
    assert cups_uri("Société", "Modèle", None) == "usb://Soci%C3%A9t%C3%A9/Mod%C3%A8le"


@pytest.mark.parametrize(
    ("make", "model", "expected"),
    [
        (None, None, "usb://Unknown/Unknown"),
        ("", "", "usb://Unknown/Unknown"),
        ("HP", None, "usb://HP/Unknown"),
        (None, "LaserJet", "usb://Unknown/LaserJet"),
    ],
)
def test_cups_uri_missing_parts_are_unknown(make, model, expected):
    assert cups_uri(make, model, None) == expected


@pytest.mark.parametrize("serial", [None, ""])
def test_cups_uri_without_a_serial_has_no_query(serial):
    uri = cups_uri("HP", "LaserJet", serial)
    assert uri == "usb://HP/LaserJet"
    assert "?" not in uri
