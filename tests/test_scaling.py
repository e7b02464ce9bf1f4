"""mini_llm.scaling: the zoo's size rules, training with kept weights and exact resume, the sweep's rows and bit
accounting, fits on synthetic data, CSV validation, and the zoo / sweep commands."""

import csv
import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_runner import run_main
from safetensors.torch import load_file

from mini_llm.data import prepare_data
from mini_llm.nn import GPT
from mini_llm.quant import count_quantized
from mini_llm.scaling import analysis, sweep, zoo
from mini_llm.tasks.charlm import train_char_gpt
from mini_llm.train import Trainer
from mini_llm.train.checkpoint import load_weights

TEST_SIZE = "1x16"


pytestmark = pytest.mark.usefixtures("one_thread")


def closed_form_non_embedding(n_layer: int, n_embd: int) -> int:
    """Per block: c_attn 3C^2+3C, c_proj C^2+C, c_fc 4C^2+4C, mlp c_proj 4C^2+C, two LayerNorms 4C; then ln_f 2C."""
    return n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd


# ---------------------------------------------------------------------------------------------------------------
# the zoo definition


def test_zoo_sizes_span_50x_with_neighbours_at_most_2x_apart():
    sizes = zoo.get_sizes("main")
    counts = [closed_form_non_embedding(s.n_layer, s.n_embd) for s in sizes]
    assert counts == [s.non_embedding_params() for s in sizes]  # the zoo's count agrees with the formula
    model = GPT(sizes[2].gpt_config())
    width = sizes[2].n_embd
    assert sum(p.numel() for p in model.parameters()) == counts[2] + model.config.vocab_size * width + 128 * width
    assert len(sizes) >= 7
    assert counts == sorted(counts) and counts[-1] / counts[0] >= 50
    assert all(1 < b / a <= 2 for a, b in zip(counts, counts[1:], strict=False))


def test_zoo_is_one_seeded_recipe_with_tied_embeddings_and_enough_tokens():
    sizes = zoo.get_sizes("main")
    for size in sizes:
        config = size.gpt_config()
        assert config.tie_weights and config.block_size == 128 and config.dropout == 0
        assert size.steps * size.batch_size * size.block_size >= 5_000_000
        trainer = size.trainer_config()
        assert trainer.lr * size.n_embd == pytest.approx(zoo.LR_TIMES_WIDTH)
        assert trainer.max_steps == size.steps
        assert size.keep_steps() == (size.steps // 8, size.steps // 4, size.steps // 2, size.steps)
    recipes = {(s.batch_size, s.block_size, s.steps, s.trainer_config().optimizer) for s in sizes}
    assert len(recipes) == 1
    assert sum(len(s.seeds) > 1 for s in sizes) >= 3
    jobs = zoo.plan("main")
    assert len({job.run_dir("/c") for job in jobs}) == len(jobs)
    assert sum(job.estimated_seconds() for job in jobs) <= 2 * 3600  # the whole zoo within 2 hours


def test_throughput_estimate_goes_through_the_pilot_points():
    for params, tokens_per_second in zoo.PILOT_THROUGHPUT:
        assert zoo.estimated_throughput(params) == pytest.approx(tokens_per_second)
    assert zoo.estimated_throughput(1e4) == pytest.approx(22e3)  # flat below the smallest pilot model


def test_plan_selects_sizes_and_seeds():
    assert [job.name for job in zoo.plan("test")] == ["1x16-seed0", "1x16-seed1", "1x32-seed0"]
    assert [job.name for job in zoo.plan("test", ["1x32"], [3, 4])] == ["1x32-seed3", "1x32-seed4"]
    with pytest.raises(ValueError, match="unknown size '9x9'.*1x16, 1x32"):
        zoo.plan("test", ["9x9"])
    with pytest.raises(ValueError, match="unknown preset set 'huge'.*main, eighth, quarter, test"):
        zoo.plan("huge")


def test_cache_directory_comes_from_the_flag_the_environment_or_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MINI_LLM_CACHE", str(tmp_path / "env"))
    assert zoo.zoo_dir(None, "test") == tmp_path / "env" / "zoo" / "test"
    assert zoo.zoo_dir(tmp_path / "flag", "main") == tmp_path / "flag" / "zoo" / "main"
    monkeypatch.delenv("MINI_LLM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.zoo_dir(None, "test") == tmp_path / "xdg" / "mini_llm" / "zoo" / "test"


# ---------------------------------------------------------------------------------------------------------------
# training


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The test set's 1x16 model (seed 0) trained by `mini-llm zoo train`: the cache directory."""
    cache = tmp_path_factory.mktemp("cache")
    code, stdout, stderr = run_main(
        ["zoo", "train", "--preset-set", "test", "--sizes", TEST_SIZE, "--seeds", "0", "--cache-dir", str(cache),
         "--no-progress", "--threads", "1"]
    )
    assert code == 0, stderr
    assert "1x16-seed0" in stdout and "validation perplexity" in stdout
    return cache


def test_training_keeps_the_weights_at_1_8_1_4_1_2_and_the_end(trained):
    job = zoo.plan("test", [TEST_SIZE], [0])[0]
    run = job.run_dir(trained)
    assert job.size.keep_steps() == (1, 2, 4, 8)
    assert zoo.job_status(job, trained) == "done"
    kept = zoo.zoo_checkpoints([job], trained)
    assert [(c.step, c.fraction, c.tokens) for c in kept] == [(1, 0.125, 64), (2, 0.25, 128), (4, 0.5, 256),
                                                                (8, 1.0, 512)]
    first, _ = load_weights(kept[0].path)
    last, info = load_weights(kept[-1].path)
    assert info["step"] == 8 and last.lm_head.weight is last.transformer.wte.weight
    assert not torch.equal(first.lm_head.weight, last.lm_head.weight)
    final = load_file(str(run / "checkpoint.safetensors"))  # the trainer's checkpoint after the last step
    assert all(torch.equal(final[f"model.{name}"], t) for name, t in last.state_dict().items())
    assert [c.step for c in zoo.zoo_checkpoints([job], trained, [Fraction(1, 2)])] == [4]


def test_a_finished_zoo_is_skipped(trained):
    run = zoo.plan("test", [TEST_SIZE], [0])[0].run_dir(trained)
    before = (run / "checkpoint.safetensors").stat().st_mtime_ns
    code, stdout, _ = run_main(["zoo", "train", "--preset-set", "test", "--sizes", TEST_SIZE, "--seeds", "0",
                                "--cache-dir", str(trained), "--no-progress", "--threads", "1"])
    assert code == 0 and "done already" in stdout
    assert (run / "checkpoint.safetensors").stat().st_mtime_ns == before


def test_an_interrupted_zoo_resumes_to_the_identical_state(trained, tmp_path, monkeypatch):
    original_step = Trainer.train_step

    def interrupt_at_step_5(self):
        if self.step == 5:
            raise KeyboardInterrupt
        return original_step(self)

    argv = ["zoo", "train", "--preset-set", "test", "--sizes", TEST_SIZE, "--seeds", "0", "--cache-dir", str(tmp_path),
            "--no-progress", "--threads", "1"]
    monkeypatch.setattr(Trainer, "train_step", interrupt_at_step_5)
    code, _, stderr = run_main(argv)
    assert code == 130 and "resume" in stderr
    job = zoo.plan("test", [TEST_SIZE], [0])[0]
    assert zoo.job_status(job, tmp_path) == "partial (step 5 of 8)"
    monkeypatch.setattr(Trainer, "train_step", original_step)
    code, stdout, stderr = run_main(argv)
    assert code == 0, stderr
    assert zoo.job_status(job, tmp_path) == "done"
    for reference, resumed in zip(zoo.zoo_checkpoints([job], trained), zoo.zoo_checkpoints([job], tmp_path),
                                  strict=True):
        a, b = load_file(str(reference.path)), load_file(str(resumed.path))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a = load_file(str(job.run_dir(trained) / "checkpoint.safetensors"))
    b = load_file(str(job.run_dir(tmp_path) / "checkpoint.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights, optimizer moments and generator states


def test_training_until_a_step_gives_the_full_runs_weights_at_that_step(trained, tmp_path):
    job = zoo.plan("test", [TEST_SIZE], [0])[0]
    preset = job.size.preset("test")
    train_char_gpt(preset, tmp_path, seed=0, progress=False, keep_steps=job.size.keep_steps(), until=2)
    kept = sorted(p.name for p in tmp_path.glob("weights_step*.safetensors"))
    assert kept == ["weights_step000001.safetensors", "weights_step000002.safetensors"]
    reference = load_file(str(zoo.zoo_checkpoints([job], trained, [Fraction(1, 4)])[0].path))
    partial = load_file(str(tmp_path / "weights_step000002.safetensors"))
    assert all(torch.equal(reference[k], partial[k]) for k in reference)
    with pytest.raises(ValueError, match="until must be an integer in 0..8"):
        train_char_gpt(preset, tmp_path / "b", seed=0, progress=False, until=9)


# ---------------------------------------------------------------------------------------------------------------
# the sweep

GRID = sweep.SweepGrid(bits=(4, 16), codebooks=("nf",), blocksizes=(None, 64), outliers=(False, True),
                       embeddings=("quantized", "16bit"))


@pytest.fixture(scope="module")
def swept(trained, tmp_path_factory) -> tuple[Path, list[zoo.ZooCheckpoint]]:
    """A reduced sweep of the final 1x16 checkpoint: (CSV path, checkpoints)."""
    job = zoo.plan("test", [TEST_SIZE], [0])[0]
    checkpoints = zoo.zoo_checkpoints([job], trained, [Fraction(1)])
    out = tmp_path_factory.mktemp("results") / "sweep.csv"
    written = sweep.run_sweep(out, checkpoints, GRID, eval_windows=8, threads=1, progress=False)
    assert written == 1 + 2 * 2 * 2
    return out, checkpoints


def independent_perplexity(model: GPT, n_windows: int) -> tuple[float, float]:
    """Perplexity and top-1 accuracy over evenly spaced validation windows, computed here from scratch."""
    val = prepare_data().val
    T = model.config.block_size
    starts = [i * (len(val) - T - 1) // (n_windows - 1) for i in range(n_windows)]
    x = torch.stack([val[s : s + T] for s in starts])  # (W, T)
    y = torch.stack([val[s + 1 : s + T + 1] for s in starts])  # (W, T)
    with torch.no_grad():
        logits = model(x).logits  # (W, T, V)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()
    return math.exp(loss), (logits.argmax(-1) == y).float().mean().item()


def test_the_16_bit_row_is_the_float16_model_measured_independently(swept):
    out, checkpoints = swept
    rows = analysis.load_results(out)
    baseline = analysis.select(rows, bits=16)
    assert len(baseline) == 1
    model, _ = load_weights(checkpoints[0].path)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())
    perplexity, accuracy = independent_perplexity(model, 8)
    assert baseline[0]["perplexity"] == pytest.approx(perplexity, rel=1e-5)
    assert baseline[0]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert baseline[0]["eval_tokens"] == 8 * 16
    n_params = sum(p.numel() for p in model.parameters())
    assert baseline[0]["total_bits"] == 16 * n_params and baseline[0]["bits_per_param"] == 16


def test_total_bits_follow_the_closed_form(swept):
    out, checkpoints = swept
    rows = analysis.load_results(out)
    model, _ = load_weights(checkpoints[0].path)
    C, V, T = model.config.n_embd, model.config.vocab_size, model.config.block_size
    matrices = [3 * C * C, C * C, 4 * C * C, 4 * C * C]  # c_attn, c_proj, c_fc, mlp c_proj of the one block
    others = 3 * C + C + 4 * C + C + 4 * C + 2 * C + T * C  # biases, LayerNorms (2 + ln_f), position embeddings

    def row(**criteria):
        (found,) = analysis.select(rows, include_baseline=False, outliers=False, bits=4, **criteria)
        return found

    blocks64 = row(blocksize=64, embedding="quantized")
    assert blocks64["linear_bits"] == sum(n * 4 + math.ceil(n / 64) * 32 for n in matrices)
    assert blocks64["embedding_bits"] == V * C * 4 + (V * C // 64) * 32
    assert blocks64["other_bits"] == 16 * others
    assert blocks64["total_bits"] == blocks64["linear_bits"] + blocks64["embedding_bits"] + 16 * others
    whole = row(blocksize=None, embedding="16bit")
    assert whole["total_bits"] == sum(n * 4 + 32 for n in matrices) + 16 * V * C + 16 * others
    assert whole["params"] == sum(matrices) + V * C + others
    assert whole["bits_per_param"] == pytest.approx(whole["total_bits"] / whole["params"])
    with_outliers = analysis.select(rows, include_baseline=False, outliers=True, blocksize=64, embedding="quantized")
    assert with_outliers[0]["total_bits"] > blocks64["total_bits"]  # float16 columns and their indices cost bits


def test_quantized_rows_differ_from_the_baseline_and_carry_their_configuration(swept):
    rows = analysis.load_results(swept[0])
    assert len({(r["bits"], r["blocksize"], r["outliers"], r["embedding"]) for r in rows}) == len(rows) == 9
    for row in rows:
        assert row["model"] == TEST_SIZE and row["seed"] == 0 and row["step"] == 8 and row["fraction"] == 1.0
        assert math.isfinite(row["perplexity"]) and 0 <= row["accuracy"] <= 1
    costs = analysis.relative_cost(rows)
    assert all(abs(r["perplexity_increase"]) > 0 for r in costs if r["bits"] == 4)
    assert [r["perplexity_increase"] for r in costs if r["bits"] == 16] == [0.0]


def test_the_sweep_resumes_by_skipping_rows_already_written(swept, tmp_path):
    out, checkpoints = swept
    copy = tmp_path / "sweep.csv"
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    copy.write_text("".join(lines[:-2]), encoding="utf-8")  # as if stopped two runs before the end
    assert sweep.run_sweep(copy, checkpoints, GRID, eval_windows=8, threads=1, progress=False) == 2
    assert sweep.run_sweep(copy, checkpoints, GRID, eval_windows=8, threads=1, progress=False) == 0
    redone = {tuple(r.values())[:19] for r in analysis.load_results(copy)}
    assert redone == {tuple(r.values())[:19] for r in analysis.load_results(out)}  # same configurations and tokens
    assert len(analysis.load_results(copy)) == 9
    text = copy.read_text(encoding="utf-8")
    copy.write_text(text[: text.rindex("\n", 0, -1) + 1] + "test,1x16,0,1", encoding="utf-8")  # a crash mid-row
    assert sweep.run_sweep(copy, checkpoints, GRID, eval_windows=8, threads=1, progress=False) == 1
    assert len(analysis.load_results(copy)) == 9
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="columns differ"):
        sweep.run_sweep(other, checkpoints, GRID, eval_windows=8, threads=1, progress=False)


def test_grid_rejects_bad_axes():
    assert len(sweep.SweepGrid().configs()) == 1 + 7 * 5 * 4 * 2
    with pytest.raises(ValueError, match="bits must be an integer in 2..8"):
        sweep.SweepGrid(bits=(9,))
    with pytest.raises(ValueError, match="codebook must be one of"):
        sweep.SweepGrid(codebooks=("fp4",))
    with pytest.raises(ValueError, match="blocksize must be a power of two"):
        sweep.SweepGrid(blocksizes=(100,))
    with pytest.raises(ValueError, match="embedding must be one of"):
        sweep.SweepGrid(embeddings=("int8",))


# ---------------------------------------------------------------------------------------------------------------
# analysis


def test_fit_recovers_known_parameters_from_synthetic_data():
    bits = np.geomspace(1e5, 1e8, 12)
    exact = analysis.fit_power_law(bits, 40.0 * bits**-0.25)
    assert (exact.coefficient, exact.alpha, exact.irreducible) == pytest.approx((40.0, 0.25, 0.0), rel=1e-9)
    assert exact.r2 == pytest.approx(1.0)
    noise = np.random.default_rng(0).normal(0, 1e-4, bits.shape)
    floor = analysis.fit_power_law(bits, 1.5 + 30.0 * bits**-0.3 + noise, irreducible="fit")
    assert floor.irreducible == pytest.approx(1.5, abs=0.02)
    assert floor.alpha == pytest.approx(0.3, rel=0.05)
    assert floor.predict(1e6) == pytest.approx(1.5 + 30.0 * 1e6**-0.3, rel=1e-3)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        analysis.fit_power_law([1e6, 1e6], [3.0, 3.0])


def synthetic_rows() -> list[dict]:
    """Rows of a fake sweep: 3-bit and 4-bit curves, the 4-bit one lower at equal bits."""
    rows = []
    for k, scale in ((3, 50.0), (4, 40.0)):
        for n in (1e5, 3e5, 1e6, 3e6):
            loss = scale * (n * k) ** -0.2
            rows.append({"bits": k, "total_bits": int(n * k), "loss": loss, "perplexity": math.exp(loss),
                         "accuracy": 0.5})
    return rows


def test_fit_per_k_and_the_best_k_per_budget():
    rows = synthetic_rows()
    fits = analysis.fit(rows)
    assert set(fits) == {3, 4}
    assert fits[3].coefficient == pytest.approx(50.0) and fits[4].alpha == pytest.approx(0.2)
    assert analysis.best_k(fits, [1e6, 1e7, 1e9]) == [(1e6, 4), (1e7, 4), (1e9, None)]  # 1e9: beyond the data
    best = analysis.best_per_budget(rows, [1e5, 1e6, 2e7])
    assert best[0] is None  # nothing fits in 1e5 bits
    assert (best[1]["bits"], best[1]["total_bits"]) == (4, 4e5)  # 4 bits x 1e5 params beat 3 bits x 3e5 params
    assert (best[2]["bits"], best[2]["total_bits"]) == (4, 1.2e7)


def test_plot_bit_scaling_draws_log_bits_with_labelled_axes(swept):
    import matplotlib

    matplotlib.use("Agg")
    ax = analysis.plot_bit_scaling(synthetic_rows())
    assert ax.get_xscale() == "log"
    assert "bits" in ax.get_xlabel() and "perplexity" in ax.get_ylabel()
    assert len(ax.lines) == 2 and [t.get_text() for t in ax.get_legend().get_texts()] == ["3-bit", "4-bit"]
    rows = analysis.select(analysis.load_results(swept[0]), blocksize=64, outliers=False, embedding="quantized")
    ax = analysis.plot_bit_scaling(rows, metric="accuracy", fits=False)
    assert "accuracy (%)" in ax.get_ylabel()
    matplotlib.pyplot.close("all")


def _set_cell(rows: list[list[str]], line: int, column: str, text: str) -> list[list[str]]:
    rows[line - 1][rows[0].index(column)] = text
    return rows


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda rows: _set_cell(rows, 3, "step", "eight"), "line 3: column 'step' cannot be 'eight'"),
        (lambda rows: _set_cell(rows, 2, "perplexity", "nan"), "line 2: column 'perplexity' cannot be 'nan'"),
        (lambda rows: _set_cell(rows, 2, "outliers", "maybe"), "line 2: column 'outliers' cannot be 'maybe'"),
        (lambda rows: rows[:1] + [rows[1][:-2]], "line 2: 27 cells, the header has 29"),
        (lambda rows: [[c for c in row if c != "perplexity"] for row in rows], r"columns \['perplexity'\] are missing"),
        (lambda rows: [], "is empty"),
    ],
    ids=["bad int", "nan", "bad bool", "short row", "missing column", "empty"],
)
def test_load_results_rejects_a_malformed_csv(swept, tmp_path, damage, message):
    with swept[0].open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    bad = tmp_path / "bad.csv"
    with bad.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(damage(rows))
    with pytest.raises(ValueError, match=message):
        analysis.load_results(bad)
    with pytest.raises(FileNotFoundError, match="mini-llm sweep"):
        analysis.load_results(tmp_path / "none.csv")


# ---------------------------------------------------------------------------------------------------------------
# the commands


def test_zoo_list_prints_the_plan(tmp_path):
    code, stdout, _ = run_main(["zoo", "list", "--cache-dir", str(tmp_path)])
    assert code == 0
    assert "3x144-seed0" in stdout and "missing" in stdout and "estimated" in stdout and str(tmp_path) in stdout


def test_sweep_command_appends_rows(trained, tmp_path):
    out = tmp_path / "cli.csv"
    argv = ["sweep", "--preset-set", "test", "--sizes", TEST_SIZE, "--seeds", "0", "--cache-dir", str(trained),
            "--out", str(out), "--fractions", "1/8,1", "--bits", "3,16", "--codebooks", "int", "--blocksizes", "256",
            "--outliers", "no", "--eval-windows", "4", "--threads", "1", "--no-progress"]
    code, stdout, stderr = run_main(argv)
    assert code == 0, stderr
    assert "wrote 4 rows" in stdout
    rows = analysis.load_results(out)
    assert sorted((r["step"], r["bits"]) for r in rows) == [(1, 3), (1, 16), (8, 3), (8, 16)]
    assert {r["blocksize"] for r in rows if r["bits"] == 3} == {256}
    with open(out, newline="", encoding="utf-8") as file:
        assert tuple(next(csv.reader(file))) == sweep.COLUMNS


BAD = {
    "unknown set": (["zoo", "train", "--preset-set", "huge"], "mini-llm zoo train: error: unknown preset set 'huge'"),
    "unknown size": (["zoo", "list", "--sizes", "9x9"], "unknown size '9x9'"),
    "bad seeds": (["zoo", "train", "--seeds", "0,-1"], "--seeds"),
    "empty sizes": (["zoo", "list", "--sizes", "2x64,"], "without empty items"),
    "bad bits": (["sweep", "--out", "x.csv", "--bits", "3,9"], "argument --bits: bits must be integers in 2..8 or 16"),
    "bad codebook": (["sweep", "--out", "x.csv", "--codebooks", "nf,fp4"], "codebooks must be among"),
    "bad blocksize": (["sweep", "--out", "x.csv", "--blocksizes", "100"], "blocksize must be a power of two"),
    "bad fraction": (["sweep", "--out", "x.csv", "--fractions", "1/3"], "fraction must be one of 1/8, 1/4, 1/2, 1"),
    "bad outliers": (["sweep", "--out", "x.csv", "--outliers", "maybe"], "outliers must be no, yes"),
    "no out": (["sweep"], "--out"),
    "no action": (["zoo"], "ACTION"),
    "nothing trained": (["sweep", "--out", "x.csv", "--preset-set", "test", "--cache-dir", "{empty}"],
                        "no kept checkpoints of the chosen models in {empty}/zoo/test; train them first"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_zoo_and_sweep_arguments_exit_2_with_a_message(case, tmp_path):
    argv, expected = BAD[case]
    argv = [arg.format(empty=tmp_path) for arg in argv]
    code, stdout, stderr = run_main(argv)
    assert code == 2 and stdout == ""
    assert expected.format(empty=tmp_path) in stderr and "Traceback" not in stderr
    assert not (tmp_path / "zoo").exists() or case == "nothing trained"


def test_kept_weight_files_survive_a_fresh_start_only_if_they_belong_to_it(trained, tmp_path):
    job = zoo.plan("test", [TEST_SIZE], [0])[0]
    copied = Path(shutil.copytree(job.run_dir(trained), tmp_path / "zoo" / "test" / job.name))
    (copied / "checkpoint.safetensors").unlink()  # no checkpoint: the next train starts afresh
    stale = copied / "weights_step000004.safetensors"
    stale.write_bytes(b"stale")
    zoo.train_zoo([job], tmp_path, progress=False)
    assert load_weights(stale)[1]["step"] == 4  # rewritten by the new run, not left over


def test_a_quantized_embedding_is_the_lm_head_matrix_read_back(trained):
    checkpoint = zoo.zoo_checkpoints(zoo.plan("test", [TEST_SIZE], [0]), trained, [Fraction(1)])[0]
    model16 = sweep.to_16bit(load_weights(checkpoint.path)[0])
    quantized = sweep.quantized_copy(model16, sweep.QuantConfig(3, "nf", 64))
    lookup = quantized.transformer.wte.weight  # (V, C)
    assert torch.equal(lookup, quantized.lm_head.dequantized_weight())
    assert not torch.equal(lookup, model16.transformer.wte.weight)
    kept = sweep.quantized_copy(model16, sweep.QuantConfig(3, "nf", 64, embedding="16bit"))
    assert torch.equal(kept.lm_head.weight, model16.lm_head.weight)
    assert kept.lm_head.weight is kept.transformer.wte.weight  # still tied, still 16-bit values
    assert count_quantized(quantized) == count_quantized(kept) + 1 == 5
