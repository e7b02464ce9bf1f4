"""`mini-llm ppl`: k-bit perplexity of SmolLM2-135M; bits counted from the file, texts, grid and the CLI."""

import csv
import math

import pytest
import torch
from cli_runner import run_main

from mini_llm.interop.gguf import read_gguf, smollm2_path
from mini_llm.scaling import llm_ppl
from mini_llm.scaling.sweep import QuantConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_file_bits_are_the_tensor_bytes_of_the_file():
    path = smollm2_path()
    reader = read_gguf(path)
    parts = llm_ppl.file_bits(reader)
    # Independent count: Q4_1 stores 32 weights in 20 bytes, Q8_0 in 34 bytes, F32 4 bytes per weight.
    per_weight = {"Q4_1": 20 / 32, "Q8_0": 34 / 32, "F32": 4.0}
    expected = sum(per_weight[t.tensor_type.name] * int(t.n_elements) for t in reader.tensors)
    assert sum(parts.values()) == 8 * expected
    assert parts["embedding"] == 8 * 34 / 32 * 49152 * 576  # the token embedding (tied LM head), Q8_0
    assert sum(parts.values()) / 8 < path.stat().st_size < sum(parts.values()) / 8 + 4e6  # + header and vocabulary


def test_texts_and_grid():
    english = llm_ppl.held_out_text("english")
    assert len(english) == llm_ppl.ENGLISH_CHARS and english.endswith("with all the saints. Amen.")
    assert "\n" in llm_ppl.held_out_text("people_daily")
    with pytest.raises(ValueError, match="text must be one of english, people_daily, got 'french'"):
        llm_ppl.held_out_text("french")
    grid = llm_ppl.default_grid()
    assert grid[0].is_baseline and len(set(grid)) == len(grid) == 40
    assert QuantConfig(4, "int", 32, centered=True) in grid and QuantConfig(8, "nf", 64) in grid
    with pytest.raises(ValueError, match="texts must be a non-empty selection of english, people_daily"):
        llm_ppl.run_llm_ppl(None, grid, texts=("english", "latin"))


class Words:
    """A stand-in tokenizer: one id per character code."""

    def encode(self, text):
        return type("Encoding", (), {"ids": [ord(c) % 1000 for c in text]})()


def test_windows_are_evenly_spaced_and_shifted_by_one():
    x, y = llm_ppl.text_windows(Words(), "english", eval_tokens=100, window=30)
    assert x.shape == y.shape == (3, 30) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="eval_tokens must be >= window"):
        llm_ppl.text_windows(Words(), "english", eval_tokens=10, window=30)


def test_cli_writes_the_file_row_and_the_baseline_then_resumes(tmp_path):
    out = tmp_path / "ppl.csv"
    argv = ["ppl", "--out", str(out), "--bits", "16", "--texts", "english", "--eval-tokens", "256", "--window", "256"]
    code, stdout, stderr = run_main(argv)
    assert code == 0, stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["codebook"] for r in rows] == ["gguf", "fp16"]
    gguf, fp16 = rows
    # The 16-bit baseline is the file's weights rounded to float16: the same perplexity to 0.1%.
    assert math.isclose(float(gguf["perplexity"]), float(fp16["perplexity"]), rel_tol=1e-3)
    assert float(fp16["bits_per_param"]) == 16.0 and 5.7 < float(gguf["bits_per_param"]) < 5.8
    assert math.isclose(math.exp(float(fp16["loss"])), float(fp16["perplexity"]))
    code, stdout, _ = run_main(argv)  # everything is in the file already
    assert code == 0 and "0 rows added" in stdout and len(list(csv.DictReader(out.open()))) == 2


def test_cli_rejects_bad_arguments(tmp_path):
    code, _, stderr = run_main(["ppl", "--out", str(tmp_path / "x.csv"), "--texts", "latin"])
    assert code == 2 and "texts must be among english, people_daily, got 'latin'" in stderr
    code, _, stderr = run_main(["ppl", "--out", str(tmp_path / "x.csv"), "--bits", "9"])
    assert code == 2 and "bits must be integers in 2..8 or 16" in stderr
