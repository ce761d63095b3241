"""Native CPU kernels as torch ops: GGUF block and x16-packed matmuls, dequantization, decode attention
and the fused decode block (kernels/csrc; docs/performance.md lists what each reads and computes).

``ops()`` gives ``torch.ops.gptkit_native`` (built on first use, see gptkit.kernels.build) or None where no
compiler or no build is available; callers then take their torch path, and one warning says why.
``GPTKIT_KERNELS`` chooses: ``auto`` (default: the best instruction set this CPU has), ``avx512``,
``avx2``, ``portable`` (plain C++), or ``off`` (never use the native kernels).
"""

from __future__ import annotations

import functools
import os
import warnings

import torch

from gptkit.errors import ConfigError

ISAS = {"portable": 0, "avx2": 1, "avx512": 2}
CHOICES = ("auto", "off", *ISAS)
KERNEL_MAX_ROWS = 16  # rows above which a dequantized dense matmul beats ggml_matmul (docs/performance.md)
PACKED_MAX_ROWS = 64  # the same for the x16 packed kernel (int16 activations: exact to ~1e-5)


class KernelsUnavailableWarning(UserWarning):
    """The native kernels are not used; gptkit runs its (slower) torch path."""


def requested() -> str:
    """The GPTKIT_KERNELS setting, checked."""
    choice = os.environ.get("GPTKIT_KERNELS", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ConfigError(f"GPTKIT_KERNELS={choice!r}; choose one of: {', '.join(CHOICES)}")
    return choice


@functools.cache
def ops():
    """``torch.ops.gptkit_native`` with the requested instruction set, or None (warned once)."""
    choice = requested()
    if choice == "off":
        return None
    from gptkit.kernels.build import BuildError, built_library

    try:
        torch.ops.load_library(str(built_library()))
    except (BuildError, OSError, RuntimeError) as error:
        warnings.warn(
            f"gptkit native kernels unavailable, using the torch path: {error}",
            KernelsUnavailableWarning,
            stacklevel=2,
        )
        return None
    native = torch.ops.gptkit_native
    if choice != "auto":
        if ISAS[choice] > native.cpu_isa():
            raise ConfigError(f"GPTKIT_KERNELS={choice}: this CPU lacks the instruction set")
        native.set_isa(ISAS[choice])
    _register_fakes()
    return native


def isa_name() -> str:
    """The instruction set the kernels run ("avx512", "avx2", "portable"), or "off"."""
    native = ops()
    if native is None:
        return "off"
    return {v: k for k, v in ISAS.items()}[native.get_isa()]


@functools.cache
def _register_fakes() -> None:
    """Shapes for torch.compile: the ops are opaque to inductor and run as they are."""

    @torch.library.register_fake("gptkit_native::ggml_matmul")
    def _(x, w, ggml_type):
        return x.new_empty(x.shape[0], w.shape[0])

    @torch.library.register_fake("gptkit_native::ggml_dequantize")
    def _(w, ggml_type, k, dtype):
        return w.new_empty(w.shape[0], k, dtype=dtype)

    @torch.library.register_fake("gptkit_native::decode_attention")
    def _(q, k, v, visible, scale):
        return torch.empty_like(q)

    @torch.library.register_fake("gptkit_native::ggml_packed_matmul")
    def _(x, packed, ggml_type, n):
        return x.new_empty(x.shape[0], n)

    @torch.library.register_fake("gptkit_native::ggml_packed_transposed")
    def _(packed, ggml_type, k, g0, g1, dtype):
        return packed.new_empty(k, 16 * (g1 - g0), dtype=dtype)

    @torch.library.register_fake("gptkit_native::ggml_packed_rows")
    def _(packed, ggml_type, k, rows, dtype):
        return packed.new_empty(rows.shape[0], k, dtype=dtype)
