"""Build the native kernels on first use into a cache directory, one compiler call, and load them.

The library is keyed by a hash of its sources, the torch version and the compiler, so an upgrade rebuilds
it; concurrent first uses wait on one file lock. Nothing is built for the build machine's CPU: the
instruction set is chosen at run time (kernels.cpp).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch

SOURCES = Path(__file__).parent / "csrc"
LIBRARY_NAME = "gptkit_native.so"
BUILD_TIMEOUT_S = 600


class BuildError(RuntimeError):
    """The native kernels could not be built (no compiler, or the compiler failed)."""


def kernels_dir() -> Path:
    """Where built kernels live: $GPTKIT_KERNELS_DIR, else gptkit/kernels under $XDG_CACHE_HOME or ~/.cache
    (not GPTKIT_CACHE_DIR, which tests point at a fresh directory: the build is the same everywhere)."""
    if os.environ.get("GPTKIT_KERNELS_DIR"):
        return Path(os.environ["GPTKIT_KERNELS_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gptkit" / "kernels"


def compiler() -> str:
    """The C++ compiler: $CXX, else the first of c++, g++ and clang++ on the PATH."""
    chosen = os.environ.get("CXX") or next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
    if not chosen or not shutil.which(chosen):
        raise BuildError(f"no C++ compiler found ({chosen or 'c++, g++ or clang++'})")
    return chosen


def _fingerprint(cxx: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCES.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(f"{torch.__version__}|{sys.version_info[:2]}|{cxx}|{sysconfig.get_platform()}".encode())
    return digest.hexdigest()[:16]


def command(cxx: str, output: Path) -> list[str]:
    """The single compiler call that builds the library."""
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{p}" for p in cpp_extension.include_paths()]
    libraries = [f"-L{p}" for p in cpp_extension.library_paths()]
    rpath = [f"-Wl,-rpath,{p}" for p in cpp_extension.library_paths()]
    return [
        cxx, "-O3", "-std=c++20", "-shared", "-fPIC", "-fopenmp", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *includes, str(SOURCES / "kernels.cpp"), "-o", str(output),
        *libraries, *rpath, "-lc10", "-ltorch_cpu", "-ltorch",
    ]  # fmt: skip


def built_library() -> Path:
    """The path of the built library, building it first if this torch and these sources have none."""
    cxx = compiler()
    directory = kernels_dir() / _fingerprint(cxx)
    library = directory / LIBRARY_NAME
    if library.exists():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same library
        if not library.exists():
            _compile(cxx, directory, library)
    return library


def _compile(cxx: str, directory: Path, library: Path) -> None:
    print("gptkit: building the native CPU kernels (once, about a minute)...", file=sys.stderr, flush=True)
    partial = directory / f"{LIBRARY_NAME}.{os.getpid()}.tmp"
    try:
        result = subprocess.run(
            command(cxx, partial), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"{cxx} failed to run: {error}") from None
    if result.returncode != 0:
        (directory / "build.log").write_text(result.stdout + result.stderr)
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"{cxx} failed ({last}); full log: {directory / 'build.log'}")
    os.replace(partial, library)  # atomic: a reader never sees half a library
