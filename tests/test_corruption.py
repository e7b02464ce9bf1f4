"""Damaged files: every file mini_llm writes, truncated, with a flipped byte in its header or data, with wrong JSON
types or wrong sizes, missing, or a directory in its place.

Each load either returns exactly what the intact file gives (the damage did not touch what is read) or raises a
ValueError / OSError whose one-line message names the file; never a third-party exception type, never different
data. A failed load leaves the damaged file as it was.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from mini_llm.nn import GPT
from mini_llm.quant import load_quantized, quantize, save_quantized
from mini_llm.scaling.analysis import load_results
from mini_llm.tasks.charlm import load_char_gpt, read_history, train_char_gpt
from mini_llm.tasks.classify.evaluate import evaluate_run, load_classifier, read_eval, write_eval
from mini_llm.tasks.classify.imbalance_sweep import read_imbalance, write_imbalance
from mini_llm.tasks.classify.runs import train_run
from mini_llm.tasks.decoding import read_result, write_result
from mini_llm.train import Trainer
from mini_llm.train.checkpoint import gpt_config_from_dict, load_weights

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ("质量很好，物流也快", "太差了，不会再买", "一般")
SWEEP_ROWS = 12  # rows of results/kbit_sweep.csv copied into the test file


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:
    """One intact copy of every kind of file, written by mini_llm's own writers (tiny settings)."""
    root = tmp_path_factory.mktemp("originals")
    train_char_gpt("tiny", root / "run", max_steps=2, progress=False, keep_steps=(1,))
    torch.manual_seed(0)
    save_quantized(root / "nf4.safetensors", *quantize(torch.randn(64, 128)))
    save_quantized(root / "centered.safetensors", *quantize(torch.randn(64, 128), 3, "int", 32, centered=True))
    train_run("naive-bayes", "tiny", root / "nb")
    train_run("mini-llm", "tiny", root / "ml")
    write_eval(evaluate_run(root / "nb", "validation"), root / "eval.json")
    for name, write in (("classify_imbalance", write_imbalance), ("decoding_3x144", write_result)):
        write(json.loads((ROOT / "results" / f"{name}.json").read_text(encoding="utf-8")), root / f"{name}.json")
    lines = (ROOT / "results" / "kbit_sweep.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (root / "sweep.csv").write_text("".join(lines[: SWEEP_ROWS + 1]), encoding="utf-8")
    return root


def snapshot(value: Any) -> Any:
    """A comparable picture of a loader's result: tensors as bytes, models as state dicts, predictors by output."""
    if isinstance(value, torch.Tensor):
        return ("tensor", str(value.dtype), tuple(value.shape), value.detach().cpu().contiguous().view(-1)
                .view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), value.shape, value.tobytes())
    if isinstance(value, torch.nn.Module):
        return snapshot(value.state_dict())
    if hasattr(value, "predict_proba"):
        return snapshot(value.predict_proba(list(TEXTS)))
    if hasattr(value, "chars"):
        return ("tokenizer", tuple(value.chars))
    if isinstance(value, dict):
        return {key: snapshot(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [snapshot(item) for item in value]
    if hasattr(value, "__dataclass_fields__"):
        return snapshot(vars(value))
    if isinstance(value, float) and value != value:
        return "nan"
    return value


def resume(run: Path) -> Any:
    """What Trainer.resume restores from the run's checkpoint (model, optimizer, step, history, RNG state)."""
    model = GPT(gpt_config_from_dict(json.loads((run / "config.json").read_text(encoding="utf-8"))["model"], run))
    trainer = Trainer.resume(run / "checkpoint.safetensors", model, lambda *args: None)
    return [trainer.model, trainer.optimizer.state_dict(), trainer.step, trainer.history, trainer.generator.get_state()]


def quant_snapshot(path: Path) -> Any:
    """(packed, state) of a QuantState file, compared field by field."""
    packed, state = load_quantized(path)
    return snapshot([packed, vars(state) | {"dtype": str(state.dtype)}])


# file kind -> (path inside originals, loader of the copy rooted at the given directory)
KINDS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "checkpoint": ("run/checkpoint.safetensors", lambda r: resume(r / "run")),
    "run-checkpoint": ("run/checkpoint.safetensors", lambda r: load_char_gpt(r / "run")),
    "weights": ("run/weights_step000001.safetensors", lambda r: load_weights(r / "run/weights_step000001.safetensors")),
    "config": ("run/config.json", lambda r: load_char_gpt(r / "run")),
    "tokenizer": ("run/tokenizer.json", lambda r: load_char_gpt(r / "run")),
    "history": ("run/history.csv", lambda r: read_history(r / "run/history.csv")),
    "quant": ("nf4.safetensors", lambda r: quant_snapshot(r / "nf4.safetensors")),
    "quant-centered": ("centered.safetensors", lambda r: quant_snapshot(r / "centered.safetensors")),
    "nb-run": ("nb/run.json", lambda r: load_classifier(r / "nb")),
    "nb-ngrams": ("nb/ngrams.json", lambda r: load_classifier(r / "nb")),
    "nb-arrays": ("nb/naive_bayes.safetensors", lambda r: load_classifier(r / "nb")),
    "ml-run": ("ml/run.json", lambda r: load_classifier(r / "ml")),
    "ml-config": ("ml/bert_config.json", lambda r: load_classifier(r / "ml")),
    "ml-model": ("ml/model.safetensors", lambda r: load_classifier(r / "ml")),
    "ml-tokenizer": ("ml/tokenizer.json", lambda r: load_classifier(r / "ml")),
    "eval": ("eval.json", lambda r: read_eval(r / "eval.json")),
    "imbalance": ("classify_imbalance.json", lambda r: read_imbalance(r / "classify_imbalance.json")),
    "decoding": ("decoding_3x144.json", lambda r: read_result(r / "decoding_3x144.json")),
    "sweep": ("sweep.csv", lambda r: load_results(r / "sweep.csv")),
}
SAFETENSORS = [kind for kind, (name, _) in KINDS.items() if name.endswith(".safetensors")]
JSON_KINDS = [kind for kind, (name, _) in KINDS.items() if name.endswith(".json")]


def flip(data: bytes, at: int) -> bytes:
    """data with the byte at `at` inverted."""
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def header_end(data: bytes, name: str) -> int:
    """Where the header of a file ends: a safetensors file's JSON header, a text file's first line."""
    if name.endswith(".safetensors"):
        return 8 + int.from_bytes(data[:8], "little")
    return data.index(b"\n") if b"\n" in data[:-1] else len(data) // 4


BYTE_DAMAGE: dict[str, Callable[[bytes, str], bytes]] = {
    "empty": lambda data, name: b"",
    "half": lambda data, name: data[: len(data) // 2],
    "one-byte-short": lambda data, name: data[:-1],
    "flip-header": lambda data, name: flip(data, header_end(data, name) // 2),
    "flip-header-length": lambda data, name: flip(data, 2),
    "flip-data": lambda data, name: flip(data, (header_end(data, name) + 3 * len(data)) // 4),
    "flip-last": lambda data, name: flip(data, len(data) - 2),
    "appended": lambda data, name: data + b"\x00" * 16,
    "random": lambda data, name: np.random.default_rng(0).bytes(len(data)),
}


def outcome(load: Callable[[Path], Any], root: Path, path: Path, intact: Any) -> str:
    """'clear' (a one-line ValueError/OSError naming path), 'same' (the intact data), 'crash: ...' or 'silent'."""
    before = path.read_bytes() if path.is_file() else None
    try:
        result = load(root)
    except (ValueError, OSError) as error:
        message = str(error)
        third_party = isinstance(error, (UnicodeError, json.JSONDecodeError)) or type(error).__module__ != "builtins"
        if str(path) not in message or "\n" in message.strip() or third_party:
            return f"crash: {type(error).__name__}: {message[:300]}"
        if (path.read_bytes() if path.is_file() else None) != before:
            return "crash: the failed load changed the file"
        return "clear"
    except Exception as error:  # noqa: BLE001 - any other type is what the test looks for
        return f"crash: {type(error).__name__}: {str(error)[:300]}"
    return "same" if snapshot(result) == intact else "silent"


@pytest.fixture(scope="module")
def intact(originals: Path) -> dict[str, Any]:
    """What each loader returns for the intact files."""
    return {kind: snapshot(load(originals)) for kind, (_, load) in KINDS.items()}


def damaged_copy(originals: Path, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """(root, path of the file to damage) of a fresh copy of the originals' directory that holds `name`."""
    top = name.split("/")[0]
    root = tmp_path / "copy"
    root.mkdir()
    source = originals / top
    if source.is_dir():
        shutil.copytree(source, root / top)
    else:
        shutil.copy2(source, root / top)
    return root, root / name


TALLY: list[tuple[str, str, str]] = []  # (kind, damage, outcome) of every probe, for the report


def check(kind: str, damage: str, root: Path, path: Path, intact: dict[str, Any]) -> None:
    """Load the damaged copy and assert a clear error or the intact data."""
    result = outcome(KINDS[kind][1], root, path, intact[kind])
    TALLY.append((kind, damage, result))
    assert result in ("clear", "same"), f"{kind} x {damage}: {result}"


@pytest.mark.parametrize("damage", [*BYTE_DAMAGE, "missing", "directory"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_damaged_bytes(kind, damage, originals, intact, tmp_path):
    root, path = damaged_copy(originals, tmp_path, KINDS[kind][0])
    if damage == "missing":
        path.unlink()
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes(BYTE_DAMAGE[damage](path.read_bytes(), path.name))
    check(kind, damage, root, path, intact)


def wrong_type(value: Any) -> Any:
    """A JSON value of another type than value."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, str):
        return 7
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return {"0": value[0] if value else None}
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def json_paths(payload: Any) -> list[tuple]:
    """Every key path to a value of payload, down to two levels (lists by their first item)."""
    paths = []
    items = payload.items() if isinstance(payload, dict) else enumerate(payload[:1])
    for key, value in items:
        paths.append((key,))
        if isinstance(value, (dict, list)):
            paths += [(key, *rest) for rest in json_paths(value) if len(rest) == 1]
    return paths


def set_path(payload: Any, keys: tuple, value: Any) -> None:
    for key in keys[:-1]:
        payload = payload[key]
    payload[keys[-1]] = value


@pytest.mark.parametrize("kind", JSON_KINDS)
def test_wrong_json_types(kind, originals, intact, tmp_path):
    """Every value down to two levels replaced by one of another type (a string for a number, a list for a dict)."""
    name = KINDS[kind][0]
    payload = json.loads((originals / name).read_text(encoding="utf-8"))
    failures = []
    for keys in json_paths(payload):
        if keys == ("format",) or (keys[0] in ("chars", "ngrams") and len(keys) == 2):
            continue  # the format tag has its own probe; a character or n-gram is any string
        changed = json.loads(json.dumps(payload))
        set_path(changed, keys, wrong_type(_get(payload, keys)))
        probe = tmp_path / "_".join(map(str, keys))
        probe.mkdir()
        root, path = damaged_copy(originals, probe, name)
        path.write_text(json.dumps(changed, ensure_ascii=False), encoding="utf-8")
        result = outcome(KINDS[kind][1], root, path, intact[kind])
        TALLY.append((kind, f"type {'.'.join(map(str, keys))}", result))
        if result not in ("clear", "same"):
            failures.append(f"{'.'.join(map(str, keys))}: {result}")
    assert not failures, f"{kind}: {len(failures)} wrong types not refused:\n" + "\n".join(failures)


def _get(payload: Any, keys: tuple) -> Any:
    for key in keys:
        payload = payload[key]
    return payload


def rewrite_safetensors(path: Path, change: Callable[[dict, dict], None]) -> None:
    """Read every tensor and the metadata of path, let change edit them, write them back (no digest renewal)."""
    with safe_open(str(path), framework="pt") as file:
        metadata = dict(file.metadata() or {})
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    change(tensors, metadata)
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)


def _first_float(tensors: dict) -> str:
    return next(name for name in sorted(tensors) if tensors[name].is_floating_point() and tensors[name].ndim >= 1)


def _shorten(tensors: dict, metadata: dict) -> None:
    name = _first_float(tensors)
    tensors[name] = tensors[name][:-1].clone()


def _retype(tensors: dict, metadata: dict) -> None:
    name = _first_float(tensors)
    tensors[name] = tensors[name].double()


def _drop(tensors: dict, metadata: dict) -> None:
    del tensors[_first_float(tensors)]


def _scale(tensors: dict, metadata: dict) -> None:
    name = _first_float(tensors)
    tensors[name] = tensors[name] * 2


def _metadata_type(tensors: dict, metadata: dict) -> None:
    for key in metadata:
        metadata[key] = "[" + metadata[key]


SAFETENSORS_EDITS = {"shorter-tensor": _shorten, "float64-tensor": _retype, "tensor-removed": _drop,
                     "values-doubled": _scale, "metadata-garbled": _metadata_type}


@pytest.mark.parametrize("edit", list(SAFETENSORS_EDITS))
@pytest.mark.parametrize("kind", SAFETENSORS)
def test_wrong_tensors(kind, edit, originals, intact, tmp_path):
    """A well-formed safetensors file whose tensors or metadata were edited: wrong sizes, dtypes, values."""
    root, path = damaged_copy(originals, tmp_path, KINDS[kind][0])
    rewrite_safetensors(path, SAFETENSORS_EDITS[edit])
    check(kind, edit, root, path, intact)


def _csv_edit(text: str, change: Callable[[list[list[str]]], None]) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    change(rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


CSV_EDITS = {
    "cell-dropped": lambda rows: rows[1].pop(),
    "cell-added": lambda rows: rows[1].append("1"),
    "column-renamed": lambda rows: rows[0].__setitem__(1, "x"),
    "header-only": lambda rows: rows.__delitem__(slice(1, None)),
    "text-in-number": lambda rows: rows[1].__setitem__(2, "abc"),
    "nan": lambda rows: rows[1].__setitem__(2, "nan"),
    "duplicate-column": lambda rows: [row.append(row[0]) for row in rows],
}


@pytest.mark.parametrize("edit", list(CSV_EDITS))
@pytest.mark.parametrize("kind", ["history", "sweep"])
def test_wrong_csv_cells(kind, edit, originals, intact, tmp_path):
    root, path = damaged_copy(originals, tmp_path, KINDS[kind][0])
    path.write_text(_csv_edit(path.read_text(encoding="utf-8"), CSV_EDITS[edit]), encoding="utf-8")
    check(kind, edit, root, path, intact)


def _config_size(payload: dict) -> None:
    payload["model"]["vocab_size"] += 1


def _tokenizer_size(payload: dict) -> None:
    payload["chars"] = payload["chars"][:-1]


def _bert_size(payload: dict) -> None:
    payload["hidden_size"] *= 2


def _ngrams_size(payload: dict) -> None:
    payload["ngrams"] = payload["ngrams"][:-1]


def _eval_size(payload: dict) -> None:
    payload["predictions"] = payload["predictions"][:-1]


def _imbalance_size(payload: dict) -> None:
    payload["runs"][0]["log_odds"] = payload["runs"][0]["log_odds"][:-1]


def _decoding_size(payload: dict) -> None:
    payload["runs"][0]["continuations"] = payload["runs"][0]["continuations"][:-1]


def _run_size(payload: dict) -> None:
    payload["preset_settings"]["finetune"]["max_length"] = 10**9


JSON_SIZE_EDITS = {
    "config": _config_size, "tokenizer": _tokenizer_size, "ml-tokenizer": _tokenizer_size, "ml-config": _bert_size,
    "nb-ngrams": _ngrams_size, "eval": _eval_size, "imbalance": _imbalance_size, "decoding": _decoding_size,
    "ml-run": _run_size,
}


@pytest.mark.parametrize("kind", list(JSON_SIZE_EDITS))
def test_wrong_json_sizes(kind, originals, intact, tmp_path):
    """A list one entry short, or a size that disagrees with another file of the run."""
    root, path = damaged_copy(originals, tmp_path, KINDS[kind][0])
    payload = json.loads(path.read_text(encoding="utf-8"))
    JSON_SIZE_EDITS[kind](payload)
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    check(kind, "size", root, path, intact)


@pytest.mark.parametrize("kind", JSON_KINDS)
def test_wrong_format_tag_or_not_an_object(kind, originals, intact, tmp_path):
    root, path = damaged_copy(originals, tmp_path, KINDS[kind][0])
    path.write_text(json.dumps([json.loads(path.read_text(encoding="utf-8"))]), encoding="utf-8")
    check(kind, "not-an-object", root, path, intact)


@pytest.fixture(scope="module", autouse=True)
def report():
    """With $CORRUPTION_TALLY set to a file name, write every probe's outcome there."""
    yield
    target = os.environ.get("CORRUPTION_TALLY")
    if target:
        Path(target).write_text(json.dumps(TALLY, ensure_ascii=False, indent=0), encoding="utf-8")


RELABELS = [("nf4.safetensors", name) for name in
            ("quantile4", "int4", "float4_e1m2", "float4_e2m1", "float4_e3m0", "dynamic4")]
RELABELS += [("centered.safetensors", name) for name in ("quantile3", "nf3", "float3_e1m1", "dynamic3")]


@pytest.mark.parametrize(("name", "codebook"), RELABELS)
def test_relabelled_codebook_is_refused(name, codebook, originals, tmp_path):
    """A QuantState file whose codebook name was changed to another known name: the stored table gives it away."""
    root, path = damaged_copy(originals, tmp_path, name)
    kind = "quant" if name == "nf4.safetensors" else "quant-centered"
    rewrite_safetensors(path, lambda tensors, metadata: metadata.update(codebook=codebook))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="codebook") as error:
        load_quantized(path)
    TALLY.append((kind, f"relabel {codebook}", "clear"))
    assert str(path) in str(error.value) and "state.code" in str(error.value) and path.read_bytes() == before


def test_a_quantile_table_keeps_its_name(tmp_path):
    """The check above does not refuse a genuine quantile codebook, with or without centering."""
    for centered in (False, True):
        packed, state = quantize(torch.randn(64, 128), 4, "quantile", 64, centered=centered)
        save_quantized(tmp_path / "q.safetensors", packed, state)
        assert load_quantized(tmp_path / "q.safetensors")[1].codebook == "quantile4"
