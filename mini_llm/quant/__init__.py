"""k-bit quantization (Dettmers & Zettlemoyer, "The case for 4-bit precision", ICML 2023).

codebooks (int, float ExMy, dynamic, quantile, NormalFloat) -> blockwise absmax quantize/dequantize with a
QuantState that round-trips through safetensors -> dense k-bit packing (bitsandbytes' 4-bit layout) ->
outlier-dependent quantization -> bit accounting -> QuantizedLinear and quantize_model. After the paper: calibrated
quantization into the same formats, GPTQ (``gptq``) and AWQ (``awq``); llama.cpp's GGUF block formats Q4_0, Q4_1,
Q8_0 and the k-quants Q2_K..Q6_K, byte for byte (``gguf_formats``, ``kquants``); the OCP microscaling formats MXFP4,
MXFP6, MXFP8 and NVIDIA's NVFP4 (``microscaling``); every one of these formats by a short name with its exact bits
(``formats``), and a model's transformer blocks stored in one of them, GPTQ and AWQ calibrated block by block
(``calibrated``). Beside them, pruning masks
(magnitude, Wanda, n:m) and the bits of a pruned matrix (``pruning``).

Imports run one way, module level only: checks <- codebooks <- state <- blockwise, accounting, bitsandbytes_layout;
checks <- packing; layers (which modules are linear) <- outliers; linear imports accounting, blockwise, layers,
outliers and state, and nothing imports linear but this package; blockwise, packing, state <- gptq <- awq;
kquants <- gguf_formats; codebooks, packing, state <- microscaling; accounting, blockwise, gguf_formats, gptq,
microscaling <- formats <- calibrated (which also imports awq). The arithmetic runs through the kernel registry
(mini_llm.kernels.quantize / dequantize / gemv: Numba on the CPU, Triton on CUDA, pure torch elsewhere); quant
imports no backend module.

May import: helpers, atomic, jsonfiles, kernels (and torch). Never train, tasks, evaluation, scaling or cli.
"""

from mini_llm.quant.accounting import bits_per_param, tensor_bits
from mini_llm.quant.awq import awq_quantize, awq_scales, awq_search, fold_scales
from mini_llm.quant.bitsandbytes_layout import from_bitsandbytes, to_bitsandbytes
from mini_llm.quant.blockwise import dequantize, dequantize_reference, quantize
from mini_llm.quant.calibrated import store_blocks
from mini_llm.quant.codebooks import CODEBOOKS, Codebook, codebook
from mini_llm.quant.formats import WeightFormat, parse_format, store_matrix
from mini_llm.quant.gguf_formats import GGUF_TYPES, gguf_bits_per_weight, gguf_dequantize, gguf_quantize
from mini_llm.quant.gptq import gptq_quantize, gptq_weight, quantize_with_scales
from mini_llm.quant.layers import linear_weight
from mini_llm.quant.linear import QuantizedLinear, count_quantized, model_bits, quantize_model, weight_error
from mini_llm.quant.microscaling import FORMATS as MX_FORMATS
from mini_llm.quant.microscaling import MXState, mx_bits, mx_dequantize, mx_quantize, mx_to_kbit
from mini_llm.quant.outliers import input_magnitudes, top_dims
from mini_llm.quant.packing import pack_codes, unpack_codes
from mini_llm.quant.pruning import magnitude_mask, pruned_bits, semi_structured_mask, wanda_mask
from mini_llm.quant.state import QuantState, load_quantized, save_quantized

__all__ = [
    "CODEBOOKS",
    "Codebook",
    "GGUF_TYPES",
    "MXState",
    "MX_FORMATS",
    "QuantState",
    "QuantizedLinear",
    "WeightFormat",
    "awq_quantize",
    "awq_scales",
    "awq_search",
    "bits_per_param",
    "codebook",
    "count_quantized",
    "dequantize",
    "dequantize_reference",
    "fold_scales",
    "from_bitsandbytes",
    "gguf_bits_per_weight",
    "gguf_dequantize",
    "gguf_quantize",
    "gptq_quantize",
    "gptq_weight",
    "input_magnitudes",
    "linear_weight",
    "load_quantized",
    "magnitude_mask",
    "model_bits",
    "mx_bits",
    "mx_dequantize",
    "mx_quantize",
    "mx_to_kbit",
    "pack_codes",
    "parse_format",
    "pruned_bits",
    "quantize",
    "quantize_model",
    "quantize_with_scales",
    "save_quantized",
    "semi_structured_mask",
    "store_blocks",
    "store_matrix",
    "tensor_bits",
    "to_bitsandbytes",
    "top_dims",
    "unpack_codes",
    "wanda_mask",
    "weight_error",
]
