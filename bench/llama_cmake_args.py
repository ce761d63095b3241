"""Print the llama-cpp-python CMAKE_ARGS that match this CPU, derived from /proc/cpuinfo.

A native build or `-DGGML_AVX_VNNI=ON` on a CPU without the VEX `avx_vnni` flag (AMD Zen 4 has AVX-512 VNNI
but not AVX-VNNI) builds a library that dies with "Illegal instruction", so every ISA option is set
explicitly from the flags the CPU reports. Usage: `CMAKE_ARGS="$(python bench/llama_cmake_args.py)" pip ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# (cpuinfo flag, the GGML CMake option it allows), in the order they are printed
AVX2_OPTIONS = (("avx2", "-DGGML_AVX2=ON"), ("fma", "-DGGML_FMA=ON"), ("f16c", "-DGGML_F16C=ON"))
AVX512_OPTIONS = (
    ("avx512f", "-DGGML_AVX512=ON"),
    ("avx512_vnni", "-DGGML_AVX512_VNNI=ON"),
    ("avx512_bf16", "-DGGML_AVX512_BF16=ON"),
)
AVX_VNNI_OPTION = ("avx_vnni", "-DGGML_AVX_VNNI=ON")


def cpu_flags(cpuinfo_text: str) -> set[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (empty when it lists none)."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cmake_args(flags: set[str]) -> list[str]:
    """The GGML CMake options for a CPU with these flags; never native, so nothing is left to the compiler."""
    options = AVX2_OPTIONS + (AVX512_OPTIONS if "avx512f" in flags else ()) + (AVX_VNNI_OPTION,)
    return ["-DGGML_NATIVE=OFF"] + [option for flag, option in options if flag in flags]


def main(cpuinfo: Path = CPUINFO) -> int:
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    print(" ".join(cmake_args(cpu_flags(text))))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else CPUINFO))
