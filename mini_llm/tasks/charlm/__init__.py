"""The char-level GPT of the book (People's Daily, January 1998): presets, training runs, loading, generated text.

One job per module:
- ``presets``   the named model sizes and training recipes (``PRESETS``, ``CharGPTPreset``, ``get_preset``)
- ``training``  ``train_char_gpt``: a fresh, resumed or overwriting run into a run directory; ``build_model``,
                ``mean_loss``
- ``rundir``    the run directory (``mini_llm.train.rundir``'s convention): file names, config.json,
                ``load_char_gpt``
- ``history``   history.csv, one row per step (``write_history``, ``read_history``)
- ``text``      prompts and generated text (``encode_prompt``, ``generate_text``)
The corpus split lives in ``mini_llm.data.char_corpus`` (``prepare_data``) and the weights files in
``mini_llm.train.checkpoint`` (``save_weights``, ``load_weights``), where the scaling sweeps read them too.
May import: the lower floors (helpers, atomic, jsonfiles, data, nn, train, generation). Never scaling or cli.
"""

from mini_llm.tasks.charlm.history import HISTORY_COLUMNS, read_history, write_history
from mini_llm.tasks.charlm.presets import PRESETS, CharGPTPreset, get_preset
from mini_llm.tasks.charlm.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CONFIG_FORMAT,
    HISTORY_FILE,
    KEPT_WEIGHTS,
    TOKENIZER_FILE,
    load_char_gpt,
    read_run_config,
)
from mini_llm.tasks.charlm.text import encode_prompt, generate_text, unknown_characters
from mini_llm.tasks.charlm.training import Log, build_model, mean_loss, train_char_gpt
from mini_llm.train.rundir import staging_dir

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "CONFIG_FORMAT",
    "HISTORY_COLUMNS",
    "HISTORY_FILE",
    "KEPT_WEIGHTS",
    "PRESETS",
    "TOKENIZER_FILE",
    "CharGPTPreset",
    "Log",
    "build_model",
    "encode_prompt",
    "generate_text",
    "get_preset",
    "load_char_gpt",
    "mean_loss",
    "read_history",
    "read_run_config",
    "staging_dir",
    "train_char_gpt",
    "unknown_characters",
    "write_history",
]
