"""sha256 checks of registered model files, remembered by (path, size, mtime) in the user's cache dir.

A registered file is hashed the first time it is used; while its size and modification time stay the same,
later uses trust the remembered result (a stat and a small JSON read). The cache lives in
``$XDG_CACHE_HOME/gptkit/verified-files.json`` (default ``~/.cache/gptkit/``; ``$GPTKIT_CACHE_DIR`` replaces
the whole directory); when it cannot be written the file is simply hashed again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from gptkit.errors import ChecksumError

CACHE_FILE = "verified-files.json"
CHUNK_BYTES = 2**20


def cache_dir() -> Path:
    """$GPTKIT_CACHE_DIR, else gptkit's directory under the user's cache dir (XDG_CACHE_HOME, ~/.cache)."""
    if os.environ.get("GPTKIT_CACHE_DIR"):
        return Path(os.environ["GPTKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gptkit"


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, reinstall_hint: str = "") -> None:
    """ChecksumError unless ``path`` hashes to ``expected`` (skipped when the cache vouches for it)."""
    stat = path.stat()
    identity = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": expected}
    key = str(path.resolve())
    remembered = _read_cache()
    if remembered.get(key) == identity:
        return
    actual = file_sha256(path)
    if actual != expected:
        raise ChecksumError(
            f"{path} is damaged: its sha256 is {actual}, but the registry expects {expected}"
            + (f"; {reinstall_hint}" if reinstall_hint else "")
        )
    remembered[key] = identity
    _write_cache(remembered)


def _read_cache() -> dict[str, dict]:
    """The remembered verifications ({} when there are none or the file is unreadable)."""
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(data: dict[str, dict]) -> None:
    """Replace the cache file atomically; a cache that cannot be written is not an error."""
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(fh.name, directory / CACHE_FILE)
    except OSError:
        pass
