"""k-bit quantization (Dettmers & Zettlemoyer, "The case for 4-bit precision", ICML 2023).

codebooks (int, float ExMy, dynamic, quantile, NormalFloat) -> blockwise absmax quantize/dequantize with a
QuantState that round-trips through safetensors -> dense k-bit packing (bitsandbytes' 4-bit layout) ->
outlier-dependent quantization -> bit accounting -> QuantizedLinear and quantize_model.
"""

from mini_llm.quant.accounting import bits_per_param, model_bits, tensor_bits
from mini_llm.quant.bitsandbytes_layout import from_bitsandbytes, to_bitsandbytes
from mini_llm.quant.blockwise import dequantize, dequantize_reference, quantize
from mini_llm.quant.codebooks import CODEBOOKS, Codebook, codebook
from mini_llm.quant.linear import QuantizedLinear, count_quantized, linear_weight, quantize_model, weight_error
from mini_llm.quant.outliers import input_magnitudes, top_dims
from mini_llm.quant.packing import pack_codes, unpack_codes
from mini_llm.quant.state import QuantState, load_quantized, save_quantized

__all__ = [
    "CODEBOOKS",
    "Codebook",
    "QuantState",
    "QuantizedLinear",
    "bits_per_param",
    "codebook",
    "count_quantized",
    "dequantize",
    "dequantize_reference",
    "from_bitsandbytes",
    "input_magnitudes",
    "linear_weight",
    "load_quantized",
    "model_bits",
    "pack_codes",
    "quantize",
    "quantize_model",
    "save_quantized",
    "tensor_bits",
    "to_bitsandbytes",
    "top_dims",
    "unpack_codes",
    "weight_error",
]
