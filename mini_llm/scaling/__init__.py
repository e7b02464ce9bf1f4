"""k-bit inference scaling on a model zoo trained here: the zoo, the quantization sweep, fits and plots.

zoo (char GPTs of several sizes, cached outside the repository) -> sweep (every kept checkpoint quantized in many
ways, one CSV row per run; serially or as Ray tasks, ``ray_sweep``) -> analysis (load_results, fit, best k per bit
budget, plot_bit_scaling).
The zoo trains char-GPT runs (``mini_llm.tasks.charlm``); the sweep reads their weights files through
``mini_llm.train.checkpoint`` and their corpus split through ``mini_llm.data``, never through an application.
May import: every floor below it (helpers, atomic, jsonfiles, data, nn, quant, train, tasks). Never cli.
"""

from mini_llm.scaling.analysis import (
    PowerLawFit,
    best_k,
    best_per_budget,
    fit,
    fit_power_law,
    load_results,
    plot_bit_scaling,
    relative_cost,
    select,
)
from mini_llm.scaling.sweep import QuantConfig, SweepGrid, bit_breakdown, quantized_copy, run_sweep
from mini_llm.scaling.zoo import PRESET_SETS, ZooCheckpoint, ZooJob, ZooSize, plan, train_zoo, zoo_checkpoints

__all__ = [
    "PRESET_SETS",
    "PowerLawFit",
    "QuantConfig",
    "SweepGrid",
    "ZooCheckpoint",
    "ZooJob",
    "ZooSize",
    "best_k",
    "best_per_budget",
    "bit_breakdown",
    "fit",
    "fit_power_law",
    "load_results",
    "plan",
    "plot_bit_scaling",
    "quantized_copy",
    "relative_cost",
    "run_sweep",
    "select",
    "train_zoo",
    "zoo_checkpoints",
]
