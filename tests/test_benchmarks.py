"""Smoke tests of the benchmark scripts: each main runs at a tiny size and prints the table it returns.

Speed is never asserted: the machine may be busy and the sizes are far too small to mean anything.
"""

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from mini_llm import kernels

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import benchmarks/NAME.py the way running it does: with benchmarks/ on sys.path (for ``common``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module(name)


def table_lines(text: str) -> list[list[str]]:
    """The cells of every markdown table row printed (header, separator and body)."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def test_gpt_training_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("bench_gpt_training", monkeypatch)
    tiny = "--n-layer 1 --n-head 2 --n-embd 16 --vocab-size 40 --block-size 8 --batch-size 2"
    rows = bench.main([*tiny.split(), "--warmup", "1", "--steps", "1", "--rounds", "2", "--threads", "1"])
    out = capsys.readouterr().out

    assert [row["model"] for row in rows] == [bench.MINI_LLM, bench.TRANSFORMERS]
    for row in rows:
        assert tuple(row) == bench.COLUMNS
        assert row["params"] == rows[0]["params"]  # the same architecture on both sides
        assert row["tokens/s (median)"] > 0
    assert rows[1]["ratio vs transformers"] == 1.0
    assert rows[0]["ratio vs transformers"] == pytest.approx(
        rows[0]["tokens/s (median)"] / rows[1]["tokens/s (median)"]
    )

    cells = table_lines(out)
    assert cells[0] == list(bench.COLUMNS)
    assert [line[0] for line in cells[2:]] == [bench.MINI_LLM, bench.TRANSFORMERS]
    assert "machine: " in out and "torch threads 1" in out


def test_gpt_training_rejects_bad_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("bench_gpt_training", monkeypatch)
    with pytest.raises(SystemExit):
        bench.main(["--n-embd", "30", "--n-head", "4"])
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])


@pytest.mark.parametrize("with_peer", [True, False])
def test_kv_cache_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], with_peer: bool) -> None:
    bench = load("bench_kv_cache", monkeypatch)
    tiny = "--n-layer 1 --n-head 2 --n-embd 16 --vocab-size 40 --block-size 16 --prompt-len 3"
    argv = [*tiny.split(), "--new-tokens", "2", "5", "--repeats", "1", "--threads", "1"]
    rows = bench.main(argv if with_peer else [*argv, "--no-transformers"])
    out = capsys.readouterr().out

    columns = bench.COLUMNS + bench.PEER_COLUMNS if with_peer else bench.COLUMNS
    assert [row["new tokens"] for row in rows] == [2, 5]
    for row in rows:
        assert tuple(row) == columns
        assert row["no cache tokens/s"] > 0 and row["KV cache tokens/s"] > 0
        assert row["speed-up"] == pytest.approx(row["KV cache tokens/s"] / row["no cache tokens/s"])

    cells = table_lines(out)
    assert cells[0] == list(columns)
    assert [line[0] for line in cells[2:]] == ["2", "5"]
    assert "machine: " in out


def test_kv_cache_rejects_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("bench_kv_cache", monkeypatch)
    with pytest.raises(SystemExit):
        bench.main(["--block-size", "32", "--prompt-len", "16", "--new-tokens", "17"])


def test_kbit_gemv_table_and_csv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bench = load("bench_kbit_gemv", monkeypatch)
    monkeypatch.setattr(bench, "COLD_BYTES", 2**16)  # a few weight copies: the smoke test checks the plumbing only
    monkeypatch.setattr(bench, "matmul_flops", lambda size=64: 1e9)
    out_csv = tmp_path / "results" / "gemv.csv"
    tiny = "--shapes 64x256 --rounds 1 --burst 2 --threads 1 --no-peers".split()  # Q4_K rows hold 256 weights
    rows = bench.main([*tiny, "--csv", str(out_csv)])
    out = capsys.readouterr().out

    kernels_run = [row["kernel"] for row in rows]
    assert kernels_run[0] == bench.FP32 and "mini_llm k=4 NF4" in kernels_run and bench.FLOOR not in kernels_run
    assert {"mini_llm MXFP4 (k-bit, 32)", "mini_llm Q4_K (GGUF bytes)"} <= set(kernels_run)
    assert (f"mini_llm k=4 NF4 (int8 x, {kernels.cpu_int8.DOT_PATH})" in kernels_run) == kernels.HAS_INT8_DOT
    for row in rows:  # % of floor: the time to read the kernel's bytes at the floor's bandwidth over its time
        floor_ms = row["MiB read"] * 2**20 / (row["floor GB/s"] * 1e9) * 1e3
        assert row["% of floor"] == pytest.approx(100 * floor_ms / row["ms (median)"])
    fp32 = next(row for row in rows if row["kernel"] == bench.FP32)
    assert fp32["% of fp32 GB/s"] == pytest.approx(100)
    for row in rows:  # the second floor: the kernel's GB/s over torch.mv fp32's in the same rounds
        assert row["% of fp32 GB/s"] == pytest.approx(100 * row["GB/s"] / fp32["GB/s"])
    assert all(row["relative error"] < 0.5 for row in rows)
    assert table_lines(out)[0] == list(bench.COLUMNS + ("relative error",))

    lines = out_csv.read_text(encoding="utf-8").splitlines()
    comments = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    assert float(comments["read bandwidth GB/s"]) > 0 and comments["fp32 matmul GFLOP/s"] == "1.0"
    assert comments["command"].endswith(f"--csv {out_csv}") and comments["burst"] == "2"
    assert all(row["first call ms"] > 0 and row["ms (median)"] > 0 for row in rows)
    body = [line for line in lines if not line.startswith("#")]
    assert body[0].split(",") == list(rows[0])
    assert len(body) == 1 + len(rows)
    assert comments["cold cache"] == "weight copies > 0 MiB rotated"
    assert len(bench.Rotating(lambda: 0, 1, abs, warm=True).copies) == 1  # --warm: the one copy stays in cache
    assert len(bench.Rotating(lambda: 0, 2**15, abs, warm=False).copies) == 3  # 2**16 bytes and one more


def test_interleaved_bursts_call_order(monkeypatch: pytest.MonkeyPatch) -> None:
    common = load("common", monkeypatch)
    calls: list[str] = []
    bursts = common.interleaved_bursts({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 2, 3)
    assert "".join(calls) == "aaabbbaaabbb"  # a burst of each candidate in turn, round after round
    assert [len(per_round) for per_round in bursts.values()] == [2, 2]
    assert all(len(seconds) == 3 and min(seconds) >= 0 for per_round in bursts.values() for seconds in per_round)
    one_call = common.interleaved_rounds({"a": lambda: calls.append("a")}, 4)
    assert len(one_call["a"]) == 4 and calls[-4:] == ["a"] * 4
    with pytest.raises(ValueError, match="burst must be >= 1"):
        common.interleaved_bursts({"a": lambda: None}, 1, 0)


def test_ddp_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bench = load("bench_ddp", monkeypatch)
    tiny = "--n-layer 1 --n-head 2 --n-embd 16 --vocab-size 40 --block-size 8 --batch-size 4"
    quick = ["--warmup", "1", "--steps", "1", "--rounds", "1", "--csv", str(tmp_path / "t.csv")]
    rows = bench.main([*tiny.split(), *quick])
    out = capsys.readouterr().out
    assert [row["variant"] for row in rows] == list(bench.VARIANTS)
    assert rows[0]["speed-up vs 1 x 2"] == 1.0 and all(row["tokens/s"] > 0 for row in rows)
    assert rows[-1]["all-reduce MB/step"] > 0  # the DDP variant reduces the gradients
    cells = table_lines(out)
    assert cells[0] == list(bench.COLUMNS) and "machine: " in out and "model: step(2)" in out
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + len(bench.VARIANTS)


def test_llm_decode_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import torch

    bench = load("bench_llm_decode", monkeypatch)
    with pytest.raises(SystemExit):
        bench.parse_args(["--engines", "mini_llm:fp64"])
    assert "--engines must be among" in capsys.readouterr().err
    # Each engine in this process instead of a child (the child runs the same measure()).
    monkeypatch.setattr(bench, "run_engine", lambda name, args: bench.measure(name, args.repeats, args.new_tokens))
    threads = torch.get_num_threads()
    try:
        bench.main(["--engines", "mini_llm fused:nf4,transformers:fp32", "--repeats", "1", "--new-tokens", "2",
                    "--csv", str(tmp_path / "t.csv")])
    finally:
        torch.set_num_threads(threads)
    cells = table_lines(capsys.readouterr().out)
    assert cells[0] == list(bench.COLUMNS) and [row[:2] for row in cells[2:]] == [["mini_llm fused", "nf4"],
                                                                                ["transformers", "fp32"]]
    nf4, hf = cells[2], cells[3]
    column = bench.COLUMNS.index
    assert float(hf[column("decode / transformers fp32")]) == 1.0 and nf4[column("decode / llama.cpp")] == ""
    assert float(nf4[column("kernel ms/token")].replace(",", "")) > 0 and hf[column("kernel ms/token")] == ""
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("# python benchmarks/bench_llm_decode.py") and len(lines) == 4


@pytest.mark.skipif(not kernels.HAS_INT8_DOT, reason="the int8-activation kernel needs AVX-512 VNNI or AVX2")
def test_int8_activations_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                tmp_path: Path) -> None:
    bench = load("bench_int8_activations", monkeypatch)
    rows = bench.main(["--formats", "nf4", "--texts", "english", "--eval-tokens", "512", "--layer-tokens", "8",
                       "--new-tokens", "0", "--threads", "1", "--csv", str(tmp_path / "t.csv")])  # greedy: test_chat
    fp32, int8 = rows
    assert (fp32["activations"], int8["activations"]) == ("fp32", "int8") and fp32["greedy tokens equal"] == 0
    assert fp32["error q_proj"] == 0.0 and all(0 < int8[f"error {kind}"] < 0.1 for kind in bench.KINDS)
    # the same weights: rounding x to int8 moves perplexity a little; the text not asked for stays empty
    assert abs(int8["perplexity english"] / fp32["perplexity english"] - 1) < 0.1
    assert fp32["perplexity people_daily"] == "" == int8["accuracy people_daily"]
    assert table_lines(capsys.readouterr().out)[0] == list(bench.COLUMNS)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("# command: python benchmarks/bench_int8_activations.py --formats nf4")
    assert len(lines) == 5  # command, machine, header, two rows
