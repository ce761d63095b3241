"""Weight-only quantized linear layers and the module swap that installs them (``quantize_model``)."""

from gptkit.quant.int4 import Int4Linear, dequantize_int4, quantize_int4
from gptkit.quant.int8 import Int8Linear, quantize_int8
from gptkit.quant.swap import SCHEMES, quantize_model

__all__ = [
    "SCHEMES",
    "Int4Linear",
    "Int8Linear",
    "dequantize_int4",
    "quantize_int4",
    "quantize_int8",
    "quantize_model",
]
