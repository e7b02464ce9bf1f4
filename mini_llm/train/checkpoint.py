"""Training checkpoints as one safetensors file: tensors in the body, everything else as JSON metadata.

Layout of the tensors (no pickle anywhere):
- ``model.<name>``                    every entry of ``model.state_dict()``
- ``optimizer.state.<i>.<key>``       optimizer state tensors of parameter i (exp_avg, exp_avg_sq, momentum_buffer)
- ``rng.<name>``                      random-generator states (uint8 tensors from ``get_state()``)
The metadata key ``mini_llm`` holds JSON: the format tag, the optimizer's parameter groups and its non-tensor
state (step counts), and whatever the caller adds (the trainer's config, step and history).

A weights file (``save_weights`` / ``load_weights``) holds a GPT's weights alone (tied tensors once) and, under the
same metadata key, its GPTConfig and the caller's JSON info: the char-GPT runs keep them at chosen steps, and the
scaling sweeps read them back. ``gpt_config_from_dict`` checks a GPTConfig saved as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from mini_llm.atomic import read_safetensors, write_safetensors
from mini_llm.helpers import check_device
from mini_llm.nn.gpt import GPT, GPTConfig

FORMAT = "mini_llm.train.checkpoint/1"
META_KEY = "mini_llm"
WEIGHTS_FORMAT = "mini_llm.charlm.weights/1"  # the tag of weights files (named when they were written by charlm)
MAX_PARAMS = 10**9  # the most parameters a saved GPT may ask for (char-GPT presets: up to ~11 M): 4 GB in float32


@dataclass
class Checkpoint:
    """The contents of a checkpoint file, tensors on the CPU."""

    model_state: dict[str, torch.Tensor]  # model.state_dict() as saved
    optimizer_state: dict[str, Any]  # optimizer.state_dict() as saved (integer parameter ids)
    rng_states: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> uint8 generator state
    extra: dict[str, Any] = field(default_factory=dict)  # caller's JSON metadata


def _to_json(value: Any, what: str) -> str:
    """json.dumps, with a TypeError that says which part of the checkpoint could not be stored."""
    try:
        return json.dumps(value, allow_nan=True)
    except TypeError as error:
        raise TypeError(f"{what} must be JSON-serialisable to go in a checkpoint: {error}") from error


def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optimizer.state.<i>.<key>``) and JSON-ready metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.state.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    meta = {"param_groups": state_dict["param_groups"], "state_scalars": scalars}
    _to_json(meta, "the optimizer's parameter groups and scalar state")
    return tensors, meta


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``flatten_optimizer_state``: rebuild an ``optimizer.state_dict()``."""
    state: dict[int, dict[str, Any]] = {}
    for param_id, values in meta["state_scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    for name, tensor in tensors.items():
        param_id, key = name.removeprefix("optimizer.state.").split(".", 1)
        state.setdefault(int(param_id), {})[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng_states: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write model, optimizer, RNG states and JSON ``extra`` to one safetensors file (atomically); return the path.

    ``model_state`` / ``optimizer_state`` replace the modules' own state dicts (e.g. whole tensors of a sharded model).
    """
    path = Path(path)
    optimizer_state = optimizer.state_dict() if optimizer_state is None else optimizer_state
    optimizer_tensors, optimizer_meta = flatten_optimizer_state(optimizer_state)
    named = {f"model.{name}": t for name, t in (model.state_dict() if model_state is None else model_state).items()}
    named |= optimizer_tensors
    named |= {f"rng.{name}": t for name, t in (rng_states or {}).items()}
    # clone: safetensors refuses tensors that share storage (tied embeddings, views)
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in named.items()}
    meta = {"format": FORMAT, "optimizer": optimizer_meta, "extra": extra or {}}
    text = _to_json(meta, "extra")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_safetensors(path, tensors, {META_KEY: text})  # atomic, with the digest of the tensors


def check_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """ValueError naming ``source`` and the first floating-point tensor that holds NaN or Inf (a damaged file)."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ValueError(
                    f"{source}: tensor {name!r} holds {bad} NaN/Inf values out of {tensor.numel()}; "
                    f"the file is damaged (restore it or train again)"
                )


def _read(path: Path, prefix: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (those starting with prefix, or all) and the parsed JSON metadata of a checkpoint file; the digest of
    all its tensors is checked (FileNotFoundError when it is missing, ValueError when damaged)."""
    tensors, header = read_safetensors(path, "a readable safetensors file")
    tensors = {k: t for k, t in tensors.items() if prefix is None or k.startswith(prefix)}
    if META_KEY not in header:
        raise ValueError(
            f"{str(path)!r} is a safetensors file but not a mini_llm checkpoint (no {META_KEY!r} metadata)"
        )
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r}: the {META_KEY!r} metadata is not valid JSON: {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise ValueError(f"{str(path)!r}: checkpoint format must be {FORMAT!r}, got {found!r}")
    check_finite(tensors, repr(str(path)))
    return tensors, meta


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; ValueError if the file is not one."""
    path = Path(path)
    tensors, meta = _read(path)
    model_state = {k.removeprefix("model."): t for k, t in tensors.items() if k.startswith("model.")}
    optimizer_tensors = {k: t for k, t in tensors.items() if k.startswith("optimizer.state.")}
    rng_states = {k.removeprefix("rng."): t for k, t in tensors.items() if k.startswith("rng.")}
    try:
        optimizer_state = unflatten_optimizer_state(optimizer_tensors, meta["optimizer"])
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{str(path)!r}: the optimizer state is malformed: {error!r}") from error
    return Checkpoint(model_state, optimizer_state, rng_states, meta.get("extra", {}))


def check_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """ValueError listing every missing, unexpected, wrongly shaped or wrongly typed tensor of ``state``."""
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for name in sorted(set(expected) & set(state)):
        want, got = expected[name], state[name]
        if want.shape != got.shape:
            problems.append(f"{name}: shape {tuple(got.shape)} in the checkpoint, {tuple(want.shape)} in the model")
        elif want.dtype != got.dtype:
            problems.append(f"{name}: dtype {got.dtype} in the checkpoint, {want.dtype} in the model")
    if problems:
        raise ValueError(f"{source} does not match the model: " + "; ".join(problems))


def check_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any], source: str) -> None:
    """ValueError if the saved optimizer state does not fit ``optimizer``'s parameter groups and shapes."""
    want_sizes = [len(g["params"]) for g in optimizer.param_groups]
    try:
        got_sizes = [len(g["params"]) for g in state["param_groups"]]
    except (KeyError, TypeError) as error:
        raise ValueError(f"{source}: the optimizer's parameter groups are malformed: {error!r}") from error
    if want_sizes != got_sizes:
        raise ValueError(
            f"{source}: the optimizer has parameter groups of sizes {want_sizes}, the checkpoint {got_sizes}"
        )
    params = [p for g in optimizer.param_groups for p in g["params"]]
    ids = [i for g in state["param_groups"] for i in g["params"]]
    param_of_id = dict(zip(ids, params, strict=True))
    for param_id, values in state["state"].items():
        if param_id not in param_of_id:
            raise ValueError(f"{source}: optimizer state for parameter id {param_id}, which no group holds")
        param = param_of_id[param_id]
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                raise ValueError(
                    f"{source}: optimizer state {key!r} of parameter {param_id} has shape {tuple(value.shape)}, "
                    f"the parameter {tuple(param.shape)}"
                )


def unique_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """model.state_dict() with each shared (tied) tensor once, under its first name, contiguous on the CPU."""
    kept: dict[tuple, str] = {}
    for name, tensor in model.state_dict().items():
        kept.setdefault(_storage_key(tensor), name)
    state = model.state_dict()
    return {name: state[name].detach().cpu().contiguous() for name in kept.values()}


def _storage_key(tensor: torch.Tensor) -> tuple:
    """What identifies one tensor among the tied names of a state dict."""
    return tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride()


def load_unique_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Load tensors written by unique_tensors into model, checked first (names, shapes, dtypes, finite values); a
    tied name absent from tensors takes its partner's tensor. ValueError naming ``source`` otherwise."""
    names_of: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict().items():
        names_of.setdefault(_storage_key(tensor), []).append(name)
    state = dict(tensors)
    for names in names_of.values():
        present = [name for name in names if name in tensors]
        for name in names:
            if present and name not in state:
                state[name] = tensors[present[0]]
    check_model_state(model, state, str(source))
    check_finite(state, str(source))
    model.load_state_dict(state)


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load only the model weights of a checkpoint into ``model`` (checked first); return the model."""
    path = Path(path)
    tensors, _ = _read(path, prefix="model.")
    state = {k.removeprefix("model."): t for k, t in tensors.items()}
    check_model_state(model, state, repr(str(path)))
    model.load_state_dict(state)
    return model


def save_weights(model: GPT, path: str | os.PathLike, info: dict[str, Any] | None = None) -> Path:
    """Write the model's weights alone (tied tensors once) to a safetensors file, atomically, with JSON ``info``."""
    metadata = {"mini_llm": json.dumps({"format": WEIGHTS_FORMAT, "model": asdict(model.config)}
                                       | (info or {}))}
    return write_safetensors(path, unique_tensors(model), metadata)


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GPT, dict[str, Any]]:
    """The model (eval mode) and the JSON info of a file written by ``save_weights``; ValueError if it is not one."""
    path = Path(path)
    what = "a weights file written by mini_llm.train.checkpoint.save_weights"
    tensors, metadata = read_safetensors(path, what)
    try:
        info = json.loads(metadata["mini_llm"])
        model = GPT(gpt_config_from_dict(info["model"], path))
    except (KeyError, TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"{path} is not {what}: {error}") from error
    load_unique_tensors(model, tensors, path)
    return model.to(check_device(device)).eval(), info


def gpt_config_from_dict(values: object, source: str | os.PathLike) -> GPTConfig:
    """A GPTConfig from the JSON dict saved with a run or weights file; ValueError naming ``source`` when a field is
    missing, unknown, of the wrong type, or the model would exceed MAX_PARAMS parameters."""
    names = {f.name for f in fields(GPTConfig)}
    if not isinstance(values, dict) or not set(values) <= names:
        raise ValueError(f"{source}: 'model' must hold GPTConfig fields {sorted(names)}, got {str(values)[:200]}")
    try:
        config = GPTConfig(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: invalid model config: {error}") from error
    if config.param_count() > MAX_PARAMS:
        raise ValueError(f"{source}: the model config asks for {config.param_count():.3g} parameters, more than the "
                         f"{MAX_PARAMS:.0e} a char-level GPT of mini_llm may have (a damaged or foreign file?)")
    return config

