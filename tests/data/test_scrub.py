"""Scrubbing: each kind of personal data / secret is caught, ordinary text (Shakespeare, numbers) is kept."""

from __future__ import annotations

import json

import pytest

from gptkit.data.prepare import prepare
from gptkit.data.scrub import KINDS, luhn_valid, scrub_files, scrub_text
from gptkit.data.shards import TokenShards

CAUGHT = {
    "email": ["john.doe@example.com", "jane_smith+news@mail.co.uk", "a.b-c@sub.domain.org", "X9@host.io"],
    "phone": [
        "+1 (555) 123-4567",
        "+44 20 7946 0958",
        "+49 30 12345678",
        "+33 1 23 45 67 89",
        "+14155552671",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "1-800-555-0199",
        "020 7946 0958",
        "07700 900123",
        "01 23 45 67 89",
        "030 12345678",
    ],
    "ipv4": ["192.168.1.10", "8.8.8.8", "10.0.0.1", "255.255.255.255"],
    "ipv6": [
        "2001:db8::8a2e:370:7334",
        "fe80::1%eth0",
        "::ffff:192.0.2.1",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    ],
    "credit_card": [
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "378282246310005",
        "3782 822463 10005",
        "4012888888881881",
    ],
    "api_key": [
        "sk-proj-Ab3dEf9hIjK1mNoPqRsTuVwXyZ012345",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    ],
}
SECRET_ASSIGNMENTS = [
    ("api_key=Zx8f9Qa0Lm3Np7Rt5Vw2Yb4", "Zx8f9Qa0Lm3Np7Rt5Vw2Yb4"),
    (
        '"token": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
        "e3b0c44298fc1c149afbf4c89",
    ),
    ("SECRET_KEY = 'q8Zr2LmX0pV7nT4kW9sB3'", "q8Zr2LmX0pV7nT4kW9sB3"),
    ("password=hunter2!", "hunter2!"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N", "eyJhbGci"),
]
ORDINARY = [
    "Dates: 2024-01-15, 15/01/2024, 01.02.2024 12:30, 15 January 2024, in 1999, from 2000-2010.",
    "Times 12:30, 12:30:45 and 9:05 pm; prices $19.99, €1,234.56, 1.000.000 EUR, £5, 100,000,000 people.",
    "Versions v1.2.3.4, version 1.2.3.4, Release 10.0.0.1, 3.12.1, 1.2.3.4.5, build 10.0.19041.",
    "Pages pp. 123-145, page 42, ISBN 978-3-16-148410-0, ZIP 02134-1234, ext. 1234, room 101.",
    "Math 3.14159 and 2.71828; 1 + 2 = 3; 0.5 12.25; ratio 16:9; score 3-1; C++ std::vector and A::B; ::1.",
    "commit 9fceb02d0ae598e95dc970b74dd3a2c1e6d6b2f1, order 1234567890123456, token count: 4096 tokens.",
    "Write to me at the office; my password is long forgotten; api keys are secret.",
]


@pytest.mark.parametrize(("kind", "example"), [(k, e) for k, examples in CAUGHT.items() for e in examples])
def test_each_kind_is_masked(kind, example):
    text, counts = scrub_text(f"Reach it at {example}, then go on.\n")
    placeholder = "<IP>" if kind.startswith("ip") else f"<{kind.upper()}>"
    assert text == f"Reach it at {placeholder}, then go on.\n"
    assert counts == {k: int(k == kind) for k in KINDS}


@pytest.mark.parametrize(("line", "secret"), SECRET_ASSIGNMENTS)
def test_secret_values_after_names_are_masked(line, secret):
    text, counts = scrub_text(line)
    assert secret not in text and "<API_KEY>" in text and counts["api_key"] == 1
    assert text.split("<API_KEY>")[0] == line.split(secret)[0]  # the name stays, the value goes


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_intact(text):
    assert scrub_text(text) == (text, dict.fromkeys(KINDS, 0))


def test_tinyshakespeare_is_left_intact(shakespeare):
    assert scrub_text(shakespeare) == (shakespeare, dict.fromkeys(KINDS, 0))


def test_bare_dotted_quad_is_an_address_but_versions_are_not():
    assert scrub_text("host 1.2.3.4 up")[0] == "host <IP> up"
    assert scrub_text("v1.2.3.4 and version 1.2.3.4")[1]["ipv4"] == 0


def test_card_numbers_need_the_luhn_checksum():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert scrub_text("4111 1111 1111 1112")[1]["credit_card"] == 0


def test_remove_mode_deletes_and_counts():
    text, counts = scrub_text("mail a@b.com or call 555-123-4567 now", mode="remove")
    assert text == "mail  or call  now" and counts["email"] == counts["phone"] == 1
    with pytest.raises(ValueError, match="mode"):
        scrub_text("x", mode="hash")


def test_scrub_files_keeps_jsonl_valid(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "call +44 20 7946 0958", "meta": {"by": "x@y.org"}, "n": 3}) + "\n")
    counts = scrub_files([source], tmp_path / "out.jsonl")
    record = json.loads((tmp_path / "out.jsonl").read_text())
    assert record == {"text": "call <PHONE>", "meta": {"by": "<EMAIL>"}, "n": 3}
    assert counts["phone"] == counts["email"] == 1


def test_prepare_scrub_records_counts_and_masks_tokens(tmp_path, cl100k):
    source = tmp_path / "in.txt"
    source.write_text("Contact bob@example.org from 10.0.0.7.\nKey: AKIAIOSFODNN7EXAMPLE\n")
    meta = prepare([source], cl100k, tmp_path / "out", scrub=True, val_fraction=0, progress=False)
    assert meta["scrub"] == {**dict.fromkeys(KINDS, 0), "email": 1, "ipv4": 1, "api_key": 1}
    stored = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert stored["scrub"] == meta["scrub"]
    text = cl100k.decode(TokenShards.open(tmp_path / "out").train, skip_special_tokens=True)
    assert text == "Contact <EMAIL> from <IP>.\nKey: <API_KEY>\n"
