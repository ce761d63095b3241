"""Scrub personal data and secrets from training text: e-mail addresses, phone numbers, IP addresses,
credit-card numbers and API keys / passwords are masked with placeholders (``<EMAIL>``...) or removed.

Each kind is a regular expression that finds candidates plus a check that accepts them; the rules:

- email: ``local@domain.tld``.
- phone: international ``+CC ...`` (8-15 digits, E.164); North American ``(555) 123-4567`` /
  ``555-123-4567`` / ``1-800-555-0199``; national numbers with a trunk 0 (``020 7946 0958``,
  ``01 23 45 67 89``, 10-12 digits, one separator style). Dates, times, prices, years, ZIP codes and
  page ranges do not fit these shapes.
- ipv4: a dotted quad of 0-255 parts without leading zeros. A version number looks the same, so a quad
  is kept when ``v``/``version``/``release``/``build``/``rev``/``section`` comes right before it, or
  when it is part of a longer dotted number (``1.2.3.4.5``). A bare ``1.2.3.4`` is masked: privacy wins.
- ipv6: anything ``ipaddress`` accepts as IPv6 with at least 4 hex digits (``::1`` and ``A::B`` stay).
- credit_card: 13-19 digits, contiguous or in the 4-4-4-4(-3) / 4-6-5 / 4-6-4 layouts with one
  separator style, passing the Luhn check.
- api_key: well-known key shapes (``sk-``, ``sk_live_``, ``ghp_``, ``github_pat_``, ``AKIA``, ``xoxb-``,
  ``AIza``, ``glpat-``, ``hf_``, JWTs), high-entropy values after ``api_key=``, ``token:``, ``secret=``,
  ``Bearer``..., and any value after ``password=``. Only the value is masked; bare hex such as git
  commit hashes is kept.

No pattern crosses a line break, so text may be scrubbed in chunks cut at newlines.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from gptkit.data.documents import OnBytes, expand_inputs, is_jsonl, read_text_chunks
from gptkit.data.jsonl import iter_jsonl
from gptkit.data.shards import DataError

MODES = ("mask", "remove")
PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ipv4": "<IP>",
    "ipv6": "<IP>",
    "credit_card": "<CREDIT_CARD>",
    "api_key": "<API_KEY>",
}
KINDS = tuple(PLACEHOLDERS)


@dataclass(frozen=True)
class Detector:
    """One kind of sensitive span: a candidate regex, an acceptance check, and the group to replace."""

    kind: str
    pattern: re.Pattern[str]
    accept: Callable[[re.Match[str]], bool] = lambda match: True
    group: int | str = 0


# ----- checks ---------------------------------------------------------------------------------------
def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def entropy_bits(text: str) -> float:
    """Shannon entropy per character of text."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(value: str) -> bool:
    """A secret-like value: letters and digits mixed, with high per-character entropy."""
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return has_digit and has_alpha and entropy_bits(value) >= 3.0


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _one_separator_style(text: str) -> bool:
    """True when the non-digit characters between digit groups are all the same one."""
    return len(set(re.findall(r"[^\d()+]", text))) <= 1


VERSION_WORDS = re.compile(
    r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\bbuild|\brev\.?|\brevision|\bsection|\bchapter|§)\s*$"
)


def _not_a_version(match: re.Match[str]) -> bool:
    """False when a dotted quad follows a version/section word, e.g. 'version 1.2.3.4'."""
    before = match.string[max(0, match.start() - 12) : match.start()]
    return VERSION_WORDS.search(before) is None


def _ipv6_valid(match: re.Match[str]) -> bool:
    address = match.group().split("%")[0]
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return sum(c in "0123456789abcdefABCDEF" for c in address.split(".")[0]) >= 4


def _card_valid(match: re.Match[str]) -> bool:
    digits = _digits(match.group())
    before = match.string[max(0, match.start() - 8) : match.start()]
    return 13 <= len(digits) <= 19 and luhn_valid(digits) and "isbn" not in before.lower()


def _international_phone(match: re.Match[str]) -> bool:
    return 8 <= len(_digits(match.group())) <= 15


def _national_phone(match: re.Match[str]) -> bool:
    return 10 <= len(_digits(match.group())) <= 12 and _one_separator_style(match.group())


def _secret_value(match: re.Match[str]) -> bool:
    return looks_random(match.group("value"))


def _known_key(match: re.Match[str]) -> bool:
    return looks_random(match.group()) or match.group().startswith(("AKIA", "ASIA", "eyJ"))


# ----- patterns -------------------------------------------------------------------------------------
def _card_layouts() -> str:
    """Card-number layouts with one separator (space, dash or none) used throughout."""
    layouts = [(4, 4, 4, 4, 3), (4, 4, 4, 4), (4, 6, 5), (4, 6, 4)]
    alternatives = []
    for n, groups in enumerate(layouts):
        sep = f"s{n}"
        rest = "".join(rf"(?P={sep})\d{{{g}}}" for g in groups[2:])
        alternatives.append(rf"\d{{{groups[0]}}}(?P<{sep}>[ -]?)\d{{{groups[1]}}}{rest}")
    return "|".join([*alternatives, r"\d{13,19}"])


OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
KEY_NAMES = (
    r"api[_-]?key|apikey|access[_-]?key(?:[_-]?id)?|secret(?:[_-]?key)?|client[_-]?secret"
    r"|(?:access|auth|api|refresh|bearer)?[_-]?token|private[_-]?key"
)
PASSWORD_NAMES = r"password|passwd|passphrase|pwd"

DETECTORS = (
    Detector(
        "api_key",
        re.compile(
            r"(?<![\w-])(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}|(?:sk|pk|rk)_(?:live|test)_"
            r"[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|(?:AKIA|ASIA)"
            r"[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}"
            r"|hf_[A-Za-z0-9]{30,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})(?![\w-])"
        ),
        _known_key,
    ),
    Detector(
        "api_key",
        re.compile(
            rf"(?i)(?<![A-Za-z0-9])(?:{KEY_NAMES})[\"']?[ \t]*[:=][ \t]*[\"']?"
            r"(?P<value>[A-Za-z0-9+/_.~-]{16,}=*)"
        ),
        _secret_value,
        "value",
    ),
    Detector(
        "api_key",
        re.compile(r"(?i)\bbearer[ \t]+(?P<value>[A-Za-z0-9+/_.~-]{16,}=*)"),
        _secret_value,
        "value",
    ),
    Detector(
        "api_key",
        re.compile(
            rf"(?i)(?<![A-Za-z0-9])(?:{PASSWORD_NAMES})[\"']?[ \t]*[:=][ \t]*[\"']?(?P<value>[^\s\"',;]{{4,}})"
        ),
        group="value",
    ),
    Detector(
        "email",
        re.compile(
            r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
            r"[A-Za-z]{2,}(?![\w-])"
        ),
    ),
    Detector(
        "ipv6",
        re.compile(
            r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
            r"(?:%[0-9A-Za-z]+)?(?![\w:]|\.\w)"
        ),
        _ipv6_valid,
    ),
    Detector("ipv4", re.compile(rf"(?<![\w.]){OCTET}(?:\.{OCTET}){{3}}(?!\w|\.\d)"), _not_a_version),
    Detector("credit_card", re.compile(rf"(?<![\w.,-])(?:{_card_layouts()})(?![\w]|[.,-]\d)"), _card_valid),
    Detector(
        "phone",
        re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\)|[ .-]?\d{1,5}){2,6}(?![\w]|[.,:/-]?\d)"),
        _international_phone,
    ),
    Detector(
        "phone",
        re.compile(r"(?<![\w+.,/-])(?:1[ .-])?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w]|[.,:/-]\d)"),
    ),
    Detector(
        "phone",
        re.compile(r"(?<![\w+.,/:-])(?:\(0\d{1,4}\)|0\d{1,4})(?:[ .-]?\d{2,8}){1,5}(?![\w]|[.,:/-]\d)"),
        _national_phone,
    ),
)


def scrub_text(text: str, mode: str = "mask") -> tuple[str, dict[str, int]]:
    """Mask (with ``<EMAIL>``-style placeholders) or remove sensitive spans; also count them per kind."""
    if mode not in MODES:
        raise ValueError(f"scrub mode must be one of {MODES}, got {mode!r}")
    counts = dict.fromkeys(KINDS, 0)
    for detector in DETECTORS:
        text = detector.pattern.sub(_replacer(detector, mode, counts), text)
    return text, counts


def _replacer(detector: Detector, mode: str, counts: dict[str, int]) -> Callable[[re.Match[str]], str]:
    """The re.sub callback of one detector: replace accepted matches (their group) and count them."""
    replacement = PLACEHOLDERS[detector.kind] if mode == "mask" else ""

    def replace(match: re.Match[str]) -> str:
        if not detector.accept(match):
            return match.group()
        counts[detector.kind] += 1
        start, end = match.span(detector.group)
        whole = match.group()
        return whole[: start - match.start()] + replacement + whole[end - match.start() :]

    return replace


def add_counts(total: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    """Add counts into total (in place) and return it."""
    for kind, n in counts.items():
        total[kind] = total.get(kind, 0) + n
    return total


def format_counts(counts: dict[str, int]) -> str:
    """The counts as a small table, one kind a line, with a total."""
    width = max(len(kind) for kind in [*counts, "total"])
    lines = [f"{'kind':<{width}}  {'found':>8}"]
    lines += [f"{kind:<{width}}  {n:>8}" for kind, n in counts.items()]
    lines.append(f"{'total':<{width}}  {sum(counts.values()):>8}")
    return "\n".join(lines)


def scrub_value(value: object, mode: str, counts: dict[str, int]) -> object:
    """A JSON value with every string inside it scrubbed (counts added in place)."""
    if isinstance(value, str):
        text, found = scrub_text(value, mode)
        add_counts(counts, found)
        return text
    if isinstance(value, list):
        return [scrub_value(v, mode, counts) for v in value]
    if isinstance(value, dict):
        return {k: scrub_value(v, mode, counts) for k, v in value.items()}
    return value


def scrub_file(
    source: Path, target: Path, mode: str = "mask", on_bytes: OnBytes | None = None
) -> dict[str, int]:
    """Write a scrubbed copy of a text file (streamed) or a JSONL file (every string value); return counts."""
    counts = dict.fromkeys(KINDS, 0)
    with target.open("w", encoding="utf-8", newline="") as out:
        if is_jsonl(source):
            for number, record in iter_jsonl(source, on_bytes):
                if isinstance(record, str):
                    raise DataError(f"{source}:{number}: {record}")
                out.write(json.dumps(scrub_value(record, mode, counts), ensure_ascii=False) + "\n")
        else:
            for chunk in read_text_chunks(source, on_bytes=on_bytes):
                text, found = scrub_text(chunk, mode)
                out.write(text)
                add_counts(counts, found)
    return counts


def _targets(sources: list[Path], out: Path) -> list[Path]:
    """Output paths: out itself for one input (unless it is a directory), else out/<input name>."""
    if len(sources) == 1 and not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        targets = [out]
    else:
        out.mkdir(parents=True, exist_ok=True)
        targets = [out / source.name for source in sources]
        if len(set(targets)) != len(targets):
            raise DataError(f"two inputs share a file name, so they cannot both be written into {out}")
    for source, target in zip(sources, targets, strict=True):
        if target.resolve() == source.resolve():
            raise DataError(f"scrubbing {source} would overwrite it; choose another --out")
    return targets


def scrub_files(inputs: Sequence[str | Path], out: str | Path, mode: str = "mask") -> dict[str, int]:
    """Write scrubbed copies of input files (paths or globs) to out (a file or a directory); return counts."""
    if mode not in MODES:
        raise ValueError(f"scrub mode must be one of {MODES}, got {mode!r}")
    sources = expand_inputs(inputs)
    counts = dict.fromkeys(KINDS, 0)
    total = sum(source.stat().st_size for source in sources)
    targets = _targets(sources, Path(out))
    with tqdm(total=total, unit="B", unit_scale=True, desc="scrub", file=sys.stderr) as bar:
        for source, target in zip(sources, targets, strict=True):
            add_counts(counts, scrub_file(source, target, mode, bar.update))
    return counts
