"""The `mini-llm` command: train writes a usable run directory, generate reproduces, user errors are one line."""

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_runner import run_main

from mini_llm.cli import main
from mini_llm.data import load_people_daily, prepare_data
from mini_llm.tasks import charlm
from mini_llm.tasks.charlm import (
    CharGPTPreset,
    get_preset,
    load_char_gpt,
    read_history,
    read_run_config,
    train_char_gpt,
)
from mini_llm.train import Trainer, TrainerConfig

RUN_FILES = ("checkpoint.safetensors", "tokenizer.json", "config.json", "history.csv")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny preset trained for 20 steps through the command line; (directory, what it printed)."""
    out = tmp_path_factory.mktemp("tiny")
    argv = ["train", "--preset", "tiny", "--run-dir", str(out), "--max-steps", "20", "--no-progress"]
    code, stdout, stderr = run_main(argv)
    assert code == 0, stderr
    return out, stdout


# ---------------------------------------------------------------------------------------------------------------
# train


def test_train_writes_the_run_directory(run_dir):
    out, stdout = run_dir
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["preset"] == "tiny"
    assert {k: config["model"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")} == dict(
        n_layer=2, n_head=4, n_embd=64, block_size=64
    )
    training = config["training"]
    assert training["steps"] == 20
    for split in ("train", "val"):
        assert math.isfinite(training[f"{split}_loss"])
        assert training[f"{split}_perplexity"] == pytest.approx(math.exp(training[f"{split}_loss"]))
    assert f"{training['val_loss']:.4f}" in stdout and "perplexity" in stdout and str(out) in stdout


def test_history_has_one_row_per_step_and_the_loss_falls(run_dir):
    out, _ = run_dir
    history = read_history(out / "history.csv")
    assert [row["step"] for row in history] == list(range(1, 21))
    assert set(history[0]) == {"step", "lr", "train_loss", "grad_norm", "eval_loss", "eval_perplexity"}
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5  # 20 steps from ln(4620) = 8.44 nats
    assert history[-1]["eval_loss"] is not None  # evaluated at the last step
    # config.json's final validation loss is measured on the same fixed batches as the last evaluation
    assert read_run_config(out)["training"]["val_loss"] == pytest.approx(history[-1]["eval_loss"], rel=1e-6)


def test_max_steps_scales_the_warmup():
    config = get_preset("tiny").trainer_config(max_steps=20)
    assert (config.max_steps, config.warmup_steps, config.resolved_decay_steps) == (20, 2, 20)
    assert get_preset("tiny").trainer_config() == get_preset("tiny").trainer


def test_prepare_data_splits_paragraphs_as_the_chapter_1_notebook():
    paragraphs = load_people_daily(form="text")
    split = int(0.9 * len(paragraphs))
    train_text, val_text = "\n".join(paragraphs[:split]), "\n".join(paragraphs[split:])
    data = prepare_data()
    assert (len(data.train), len(data.val)) == (len(train_text), len(val_text))
    assert data.tokenizer.decode(data.train[:200].tolist()) == train_text[:200]
    assert data.train.dtype == torch.long


def test_train_refuses_to_overwrite_a_run(run_dir):
    out, _ = run_dir
    before = (out / "checkpoint.safetensors").stat().st_mtime_ns
    argv = ["train", "--preset", "tiny", "--run-dir", str(out), "--max-steps", "20", "--no-progress"]
    code, _, stderr = run_main(argv)
    assert code == 2
    assert "--resume" in stderr and "--overwrite" in stderr
    assert (out / "checkpoint.safetensors").stat().st_mtime_ns == before


MICRO = CharGPTPreset(
    description="for tests",
    n_layer=1, n_head=2, n_embd=16, block_size=16,
    trainer=TrainerConfig(
        max_steps=12, batch_size=4, lr=3e-3, warmup_steps=2, eval_interval=4, eval_batches=2, checkpoint_interval=4
    ),
)


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(charlm.PRESETS, "micro", MICRO)
    _, _, reference = train_char_gpt("micro", tmp_path / "whole", progress=False)

    original_step = Trainer.train_step

    def interrupt_at_step_6(self):
        if self.step == 6:
            raise KeyboardInterrupt
        return original_step(self)

    argv = ["train", "--preset", "micro", "--run-dir", str(tmp_path / "parts"), "--no-progress"]
    monkeypatch.setattr(Trainer, "train_step", interrupt_at_step_6)
    assert main(argv) == 130
    assert f"--run-dir {tmp_path / 'parts'} --resume" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "train_step", original_step)
    assert main(argv + ["--resume"]) == 0  # continues from the checkpoint of step 4

    resumed = read_history(tmp_path / "parts" / "history.csv")
    assert [row["train_loss"] for row in resumed] == pytest.approx([row["train_loss"] for row in reference], abs=0)
    assert read_run_config(tmp_path / "parts")["training"]["val_loss"] == pytest.approx(
        read_run_config(tmp_path / "whole")["training"]["val_loss"], abs=0
    )


def test_resume_with_more_steps_trains_on_at_the_final_learning_rate(tmp_path, monkeypatch):
    monkeypatch.setitem(charlm.PRESETS, "micro", MICRO)
    _, _, first = train_char_gpt("micro", tmp_path, max_steps=8, progress=False)
    _, _, longer = train_char_gpt("micro", tmp_path, max_steps=11, progress=False, resume=True)
    assert longer[:8] == first
    assert [row["lr"] for row in longer[8:]] == [MICRO.trainer.min_lr] * 3
    assert [row["step"] for row in read_history(tmp_path / "history.csv")] == list(range(1, 12))


def test_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "none"), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "checkpoint.safetensors" in err


def test_the_old_out_spelling_of_the_run_directory_still_works_with_a_warning(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "old"), "--resume", "--no-progress"]) == 2
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert warning == ("mini-llm train: warning: --out for the run directory is deprecated and will be removed in "
                       "the next release; use --run-dir")
    assert error.startswith("mini-llm train: error: ") and str(tmp_path / "old") in error  # the value was used


# ---------------------------------------------------------------------------------------------------------------
# generate


def generate(capsys, run: Path, *flags: str) -> str:
    """The text that `mini-llm generate` prints for the run directory."""
    assert main(["generate", "--checkpoint", str(run), *flags]) == 0
    return capsys.readouterr().out.rstrip("\n")


def test_generate_continues_the_prompt_and_the_seed_reproduces_it(run_dir, capsys):
    out, _ = run_dir
    flags = ("--prompt", "中国", "--max-new-tokens", "10")
    first = generate(capsys, out, *flags, "--seed", "0")
    assert first.startswith("中国") and len(first) > len("中国")
    assert generate(capsys, out, *flags, "--seed", "0") == first
    assert generate(capsys, out, *flags, "--seed", "1") != first  # the seed is used


def test_greedy_decoding_is_the_same_with_and_without_the_kv_cache(run_dir, capsys):
    out, _ = run_dir
    flags = ("--prompt", "人民日报", "--max-new-tokens", "64", "--greedy")  # 68 > block_size 64: the window slides
    cached = generate(capsys, out, *flags)
    assert cached.startswith("人民日报")
    assert generate(capsys, out, *flags, "--no-cache") == cached


def test_sampling_flags_are_passed_on(run_dir, capsys):
    out, _ = run_dir
    flags = ("--prompt", "中国", "--max-new-tokens", "8", "--seed", "3")
    # top-k 1 keeps only the likeliest character: the same as greedy decoding
    assert generate(capsys, out, *flags, "--top-k", "1") == generate(capsys, out, *flags, "--greedy")


def test_decoding_writes_every_strategy_for_the_same_prompts(run_dir, tmp_path, capsys):
    from mini_llm.tasks.decoding import STRATEGIES, read_result

    out, _ = run_dir
    path = tmp_path / "decoding.json"
    argv = ["decoding", "--checkpoint", str(out), "--out", str(path), "--prompts", "3", "--new-chars", "5",
            "--prompt-chars", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = read_result(path)
    assert [run["strategy"]["name"] for run in result["runs"]] == [s.name for s in STRATEGIES] + ["top-p 0.9"] * 2
    assert result["settings"]["torch_threads"] == 1 and result["settings"]["prompt_chars"] == 8
    assert all(len(text) == 5 for run in result["runs"] for text in run["continuations"])
    assert "greedy" in printed and str(path) in printed
    assert main([*argv, "--out", str(tmp_path / "again.json")]) == 0  # the same command writes the same texts
    again = read_result(tmp_path / "again.json")
    assert again["runs"] == result["runs"] and again["references"] == result["references"]


# ---------------------------------------------------------------------------------------------------------------
# user errors: exit status 2, one message naming the problem, no traceback

GENERATE = ["generate", "--checkpoint", "{run}", "--prompt", "中"]  # {run}: the trained run directory
BAD_ARGUMENTS = {
    "unknown preset": (["train", "--preset", "huge"], ["unknown preset 'huge'", "tiny, small, base"]),
    "max-steps 0": (["train", "--max-steps", "0"], ["--max-steps", "integer >= 1", "'0'"]),
    "negative seed": (["train", "--seed", "-1"], ["--seed", "[0, 2**63 - 1]"]),
    "huge seed": ([*GENERATE, "--seed", str(2**64)], ["--seed", "[0, 2**63 - 1]"]),
    "bad device": (["train", "--device", "nonsense"], ["device 'nonsense'", "'cpu'"]),
    "no command": ([], ["COMMAND"]),
    "missing checkpoint": (
        ["generate", "--checkpoint", "{missing}", "--prompt", "中"],
        ["{missing}", "does not exist", "mini-llm train"],
    ),
    "empty prompt": (["generate", "--checkpoint", "{run}", "--prompt", ""], ["--prompt", "empty"]),
    "unknown characters": (
        ["generate", "--checkpoint", "{run}", "--prompt", "中国😀中é"],
        ["--prompt", "outside the vocabulary", "'😀'", "'é'"],
    ),
    "temperature 0": ([*GENERATE, "--temperature", "0"], ["--temperature", "> 0"]),
    "temperature nan": ([*GENERATE, "--temperature", "nan"], ["--temperature"]),
    "temperature text": ([*GENERATE, "--temperature", "hot"], ["--temperature"]),
    "top-k 0": ([*GENERATE, "--top-k", "0"], ["--top-k", "integer >= 1"]),
    "top-p 0": ([*GENERATE, "--top-p", "0"], ["--top-p", "(0, 1]"]),
    "top-p 1.5": ([*GENERATE, "--top-p", "1.5"], ["--top-p", "(0, 1]"]),
    "max-new-tokens 0": (
        [*GENERATE, "--max-new-tokens", "0"],
        ["--max-new-tokens", "integer >= 1"],
    ),
    "no prompt": (["generate", "--checkpoint", "{run}"], ["--prompt"]),
    "decoding without a model": (
        ["decoding", "--checkpoint", "{missing}", "--out", "{missing}.json"],
        ["decoding", "{missing}", "does not exist"],
    ),
    "temperature that overflows the logits": (
        [*GENERATE, "--temperature", "1e-45"], ["generate", "temperature=1e-45 is too small for these logits"]
    ),
    "max-new-tokens beyond the maximum": (
        [*GENERATE, "--max-new-tokens", "1" + "0" * 21], ["--max-new-tokens", "an integer >= 1 and at most 100_000"]
    ),
    "max-steps beyond the maximum": (
        ["train", "--max-steps", "9" * 23], ["--max-steps", "an integer >= 1 and at most 1_000_000"]
    ),
    "new-chars beyond the maximum": (
        ["decoding", "--checkpoint", "{run}", "--out", "{missing}.json", "--new-chars", "1" + "0" * 21],
        ["--new-chars", "an integer >= 1 and at most 100_000"],
    ),
    "threads beyond the maximum": (
        ["decoding", "--checkpoint", "{run}", "--out", "{missing}.json", "--threads", "9" * 20],
        ["--threads", "an integer >= 1 and at most 1_024"],
    ),
    "meta device for train": (["train", "--device", "meta"], ["device 'meta' holds shapes but no data", "'cpu'"]),
    "meta device for generate": ([*GENERATE, "--device", "meta"], ["device 'meta' holds shapes but no data"]),
    "decoding with too many prompts": (
        ["decoding", "--checkpoint", "{run}", "--out", "{missing}.json", "--prompts", "100000"],
        ["n_prompts=100000 exceeds"],
    ),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_exit_2_with_a_message(case, run_dir, tmp_path, capsys):
    out, _ = run_dir
    argv, expected = BAD_ARGUMENTS[case]
    names = {"run": str(out), "missing": str(tmp_path / "no-such-run")}
    assert main([arg.format(**names) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error:" in captured.err and "Traceback" not in captured.err
    for text in expected:
        assert text.format(**names) in captured.err, (text, captured.err)
    if "unknown characters" in case:
        assert "'中'" not in captured.err  # only the unknown characters are listed


def test_a_top_p_below_the_smallest_float32_decodes_greedily(run_dir, capsys):
    assert main([*GENERATE[:2], str(run_dir[0]), *GENERATE[3:], "--greedy", "--max-new-tokens", "8"]) == 0
    greedy = capsys.readouterr().out
    assert main([*GENERATE[:2], str(run_dir[0]), *GENERATE[3:], "--top-p", "1e-300", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out == greedy


def test_resume_with_fewer_steps_than_trained_says_so(run_copy, capsys):
    argv = ["train", "--preset", "tiny", "--run-dir", str(run_copy), "--resume", "--max-steps", "1", "--no-progress"]
    before = {path.name: path.read_bytes() for path in run_copy.iterdir()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "max_steps (--max-steps) is 1 but the run in" in err and "already trained 20 steps" in err
    assert "until must be" not in err and len(err.strip().splitlines()) == 1
    assert {path.name: path.read_bytes() for path in run_copy.iterdir()} == before


def test_a_file_size_limit_is_one_line_and_keeps_no_partial_file(tmp_path, monkeypatch, capsys):
    resource = pytest.importorskip("resource")
    monkeypatch.setitem(charlm.PRESETS, "micro", MICRO)
    out = tmp_path / "run"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # the tokenizer fits, the checkpoint does not
    try:
        code = main(["train", "--preset", "micro", "--run-dir", str(out), "--no-progress"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert code == 1  # a failure while running, not a usage error
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"could not write {out / 'checkpoint.safetensors'}" in err and "File too large" in err
    assert not list(out.glob("*.partial"))


def test_ctrl_c_while_the_command_imports_or_runs_gives_130_without_a_traceback(run_dir):
    # 100,000 new characters keep the command busy long after 1 s, so the signal lands while it imports torch (a slow
    # machine) or while it generates (a fast one): both must end with 130 and one line, never 0 or a traceback
    argv = [sys.executable, "-m", "mini_llm", "generate", "--checkpoint", str(run_dir[0]), "--prompt", "中",
            "--max-new-tokens", "100000"]
    # A terminal starts a command with Ctrl-C at its default action; a runner started in the background (`cmd &`
    # without job control) ignores SIGINT, and a child would inherit that and never see the signal: restore it
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err, err


def test_help_and_version_return_0(capsys):
    assert main(["--help"]) == 0
    assert "generate" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("mini-llm ")


# ---------------------------------------------------------------------------------------------------------------
# load_char_gpt


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    """A copy of the trained run directory that a test may damage."""
    return Path(shutil.copytree(run_dir[0], tmp_path / "run"))


def test_load_char_gpt_returns_the_trained_model(run_copy):
    model, tokenizer = load_char_gpt(run_copy)
    assert not model.training
    assert model.config.vocab_size == tokenizer.vocab_size == read_run_config(run_copy)["model"]["vocab_size"]
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied after loading
    same, _ = load_char_gpt(run_copy / "checkpoint.safetensors")  # the file instead of its directory
    assert torch.equal(same.lm_head.weight, model.lm_head.weight)
    with pytest.raises(NotADirectoryError, match="history.csv is a file"):
        load_char_gpt(run_copy / "history.csv")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "nan"])
def test_load_char_gpt_rejects_a_corrupt_checkpoint(run_copy, damage, capsys):
    path = run_copy / "checkpoint.safetensors"
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")  # "nan": 0xFF bytes in the tensor data, header intact
    nan = data[:header_end] + b"\xff" * 64 + data[header_end + 64 :]
    damaged = {"garbage": b"not a safetensors file" * 10, "truncated": data[: len(data) // 2], "empty": b"", "nan": nan}
    path.write_bytes(damaged[damage])
    with pytest.raises(ValueError, match="checkpoint.safetensors"):
        load_char_gpt(run_copy)
    for greedy in ([], ["--greedy"]):
        assert main(["generate", "--checkpoint", str(run_copy), "--prompt", "中国", *greedy]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    if damage == "nan":  # resuming refuses the damaged checkpoint and leaves it as it was
        assert main(["train", "--preset", "tiny", "--run-dir", str(run_copy), "--resume", "--max-steps", "3"]) == 2
        err = capsys.readouterr().err  # the checksum of issue 17 catches the damage before the NaN/Inf check does
        assert "NaN/Inf" in err or "do not match the SHA-256 recorded" in err
        assert path.read_bytes() == nan


@pytest.mark.parametrize(
    "name, text",
    [
        ("config.json", "{not json"), ("config.json", '{"format": "other"}'), ("tokenizer.json", "[]"),
        ("config.json", "[" * 100000 + "]" * 100000), ("tokenizer.json", "[" * 100000 + "]" * 100000),
        ("tokenizer.json", '{"format": "mini_llm.CharTokenizer", "version": 1, "chars": [1, 2]}'),
    ],
)
def test_load_char_gpt_rejects_corrupt_json(run_copy, name, text):
    (run_copy / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=name):
        load_char_gpt(run_copy)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(n_layer=2.0), "n_layer must be an integer >= 1, got 2.0"),
        (dict(n_layer="2"), "n_layer must be an integer >= 1, got '2'"),
        (dict(bias="no"), "bias must be True or False"),
        (dict(layer_norm_epsilon=-1), "layer_norm_epsilon must be a finite number > 0"),
        (dict(n_embd=2**40), "asks for 2.9e\\+25 parameters, more than the 1e\\+09"),
        (dict(block_size=2**40), "asks for 7.04e\\+13 parameters"),
        (dict(size=3), "'model' must hold GPTConfig fields"),
    ],
)
def test_a_run_config_with_wrong_types_or_sizes_is_one_line(run_copy, changes, message, capsys):
    config = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    config["model"].update(changes)
    (run_copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_char_gpt(run_copy)
    assert main(["generate", "--checkpoint", str(run_copy), "--prompt", "中"]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_load_char_gpt_rejects_a_wrong_model_config(run_copy):
    config = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    config["model"]["n_embd"] = 32
    (run_copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="shape"):
        load_char_gpt(run_copy)


@pytest.mark.parametrize("name", RUN_FILES[:3])
def test_load_char_gpt_names_a_missing_file(run_copy, name):
    (run_copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{name}.*mini-llm train"):
        load_char_gpt(run_copy)


def test_load_char_gpt_names_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*mini-llm train"):
        load_char_gpt(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------------------
# the installed entry points


def test_console_script_and_python_m_run():
    script = Path(sys.executable).with_name("mini-llm")
    commands = {
        "script": [str(script), "train", "--preset", "huge"],
        "module": [sys.executable, "-m", "mini_llm", "--help"],
    }
    if not script.exists():  # not installed next to this interpreter: run the entry-point function the same way
        commands["script"] = [sys.executable, "-c", "import sys; from mini_llm.cli import main; sys.exit(main())",
                              "train", "--preset", "huge"]
    running = {name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, argv in commands.items()}  # both at once: each spends seconds importing torch
    results = {name: (*process.communicate(timeout=120), process.returncode) for name, process in running.items()}
    _, stderr, code = results["script"]
    assert code == 2
    assert "mini-llm train: error: argument --preset: unknown preset 'huge'" in stderr and "Traceback" not in stderr
    stdout, _, code = results["module"]
    assert code == 0 and "usage: mini-llm" in stdout and "generate" in stdout


def test_an_interrupted_overwrite_keeps_the_earlier_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(charlm.PRESETS, "micro", MICRO)
    out = tmp_path / "run"
    train_char_gpt("micro", out, max_steps=4, progress=False)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    original_step = Trainer.train_step

    def interrupt_at_step_6(self):
        if self.step == 6:
            raise KeyboardInterrupt
        return original_step(self)

    argv = ["train", "--preset", "micro", "--run-dir", str(out), "--overwrite", "--no-progress"]
    monkeypatch.setattr(Trainer, "train_step", interrupt_at_step_6)
    assert main(argv) == 130
    assert "still holds the earlier run, unchanged" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # config, history, checkpoint: all old
    assert load_char_gpt(out)[0] is not None
    monkeypatch.setattr(Trainer, "train_step", original_step)
    assert main(argv) == 0  # the finished overwrite replaces the run and removes the staging directory
    assert read_run_config(out)["training"]["steps"] == MICRO.trainer.max_steps
    assert len(read_history(out / "history.csv")) == MICRO.trainer.max_steps
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
