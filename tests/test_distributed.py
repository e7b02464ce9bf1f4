"""Data-parallel training on torch.distributed (gloo on the CPU): 2 ranks compute what 1 process computes with
2 accumulation steps, resume exactly, and a rank that dies or hangs makes the others stop with a clear error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mini_llm.train import TrainerConfig, distributed
from mini_llm.train.distributed import World

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import make_trainer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
WORKER = Path(__file__).parent / "ddp_worker.py"
STEPS = 20
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]  # 2 gloo ranks


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """Run the worker on 2 gloo ranks with torchrun; fail the test with its output if it fails."""
    done = subprocess.run([*TORCHRUN, str(WORKER), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def result(out: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    """(losses per step, final weights) written by the worker."""
    return json.loads((out / "losses.json").read_text()), load_file(out / "weights.safetensors")


def assert_same_run(losses, weights, trainer, tol: float = 1e-6, weight_tol: float = 1e-6) -> None:
    """The worker's run equals ``trainer``'s: every step's loss within tol and every final weight within weight_tol."""
    ours = [record["train_loss"] for record in trainer.history]
    assert len(losses) == len(ours) == STEPS
    assert max(abs(a - b) for a, b in zip(losses, ours, strict=True)) <= tol, (losses, ours)
    state = trainer.model.state_dict()
    assert max((weights[name] - state[name]).abs().max().item() for name in weights) <= weight_tol


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """An uninterrupted 20-step run on 2 ranks (dropout 0.1: each rank draws its own masks)."""
    out = tmp_path_factory.mktemp("two_ranks")
    torchrun("--steps", str(STEPS), "--dropout", "0.1", "--out", str(out))
    return out


def test_two_ranks_equal_one_process_with_two_accumulation_steps(tmp_path):
    torchrun("--steps", str(STEPS), "--out", str(tmp_path))
    one = make_trainer(accum=2, steps=STEPS)
    one.train()
    losses, weights = result(tmp_path)
    assert_same_run(losses, weights, one)  # measured: identical to the last bit on gloo
    assert losses[-1] < losses[0] - 0.5  # the run does learn (the sequence repeats every 97 tokens)
    full = make_trainer(accum=1, steps=STEPS)
    full.train()  # the mean of two half-batch means is the full-batch mean, up to float rounding, which Adam's
    assert_same_run(losses, weights, full, tol=1e-4, weight_tol=1e-3)  # division by sqrt(v) grows (1.2e-4 measured)


def test_resume_on_two_ranks_equals_the_uninterrupted_run(two_ranks, tmp_path):
    checkpoint = str(tmp_path / "checkpoint.safetensors")
    torchrun("--steps", str(STEPS), "--dropout", "0.1", "--until", "8", "--checkpoint", checkpoint)
    torchrun("--steps", str(STEPS), "--dropout", "0.1", "--checkpoint", checkpoint, "--resume",
             "--out", str(tmp_path / "resumed"))
    resumed, uninterrupted = result(tmp_path / "resumed"), result(two_ranks)
    assert resumed[0] == uninterrupted[0]  # every step's loss, the 8 restored ones included
    assert all(torch.equal(resumed[1][name], uninterrupted[1][name]) for name in uninterrupted[1])
    # both ranks' dropout states are in the file; a single process cannot take over a 2-rank run
    with pytest.raises(ValueError, match=r"written by 2 data-parallel process\(es\), this run has 1.*"
                                         r"--nproc_per_node 2"):
        make_trainer(accum=1, steps=STEPS, dropout=0.1).load_checkpoint(checkpoint)


def test_fsdp_on_two_ranks_equals_one_process_and_resumes(tmp_path):
    torchrun("--steps", str(STEPS), "--parallel", "fsdp", "--out", str(tmp_path / "fsdp"))
    one = make_trainer(accum=2, steps=STEPS)
    one.train()
    losses, weights = result(tmp_path / "fsdp")
    assert_same_run(losses, weights, one)  # measured: identical to the last bit, as DDP
    checkpoint = str(tmp_path / "checkpoint.safetensors")
    torchrun("--steps", str(STEPS), "--parallel", "fsdp", "--until", "8", "--checkpoint", checkpoint)
    # the file holds whole tensors, so the sharded run goes on replicated (DDP) just as well
    torchrun("--steps", str(STEPS), "--checkpoint", checkpoint, "--resume", "--out", str(tmp_path / "ddp"))
    assert_same_run(*result(tmp_path / "ddp"), one)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("how", ["dies", "hangs"])
def test_a_rank_that_stops_makes_the_other_fail_clearly(how):
    port, extra = free_port(), ["--rank-1-hangs"] if how == "hangs" else []
    ranks = []
    for rank in (0, 1):
        env = os.environ | {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": str(port), distributed.TIMEOUT_ENV: "5"}
        ranks.append(subprocess.Popen([sys.executable, str(WORKER), "--rank-1-dies-after", "3", *extra], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    start = time.perf_counter()
    try:
        _, stderr = ranks[0].communicate(timeout=120)
    finally:
        for process in ranks:
            process.kill()
    assert ranks[0].returncode != 0
    assert "rank 0 of 2 failed at step 4" in stderr and "another rank has usually stopped" in stderr, stderr
    assert ("Timed out" if how == "hangs" else "Connection") in stderr, stderr
    assert time.perf_counter() - start < 60  # seconds, not a hang (the timeout is 5 s)


def test_micro_batches_by_hand():
    x, y = torch.arange(24).view(8, 3), torch.arange(8)  # (B, T), (B,)
    parts = distributed.micro_batches(x, y, World(rank=1, size=2), accum_steps=2)  # rank 1: rows 4..5 and 6..7
    assert [part[1].tolist() for part in parts] == [[4, 5], [6, 7]]
    assert torch.equal(parts[0][0], x[4:6])
    batch = {"input_ids": x, "attention_mask": x > 3}
    (first, labels), = distributed.micro_batches(batch, y, World(rank=0, size=4), accum_steps=1)
    assert torch.equal(first["input_ids"], x[:2]) and torch.equal(first["attention_mask"], x[:2] > 3)
    assert labels.tolist() == [0, 1]
    assert distributed.micro_batches(x, y, World(), 1)[0][0] is not None  # one process: the whole batch


def test_bad_splits_name_the_settings():
    with pytest.raises(ValueError, match=r"batch_size = 8 must be divisible by the world size x grad_accum_steps = "
                                         r"3 x 1 = 3: with 3 processes \(--nproc_per_node\)"):
        distributed.check_split(8, World(rank=0, size=3), 1)
    with pytest.raises(ValueError, match=r"at most 8 processes"):
        distributed.check_split(8, World(rank=0, size=16), 1)
    with pytest.raises(ValueError, match=r"batch_size = 6 must be divisible .* 1 x 4 = 4"):
        make_trainer(accum=1, steps=2).__class__(
            torch.nn.Linear(2, 2), TrainerConfig(batch_size=6, grad_accum_steps=4, warmup_steps=0), lambda b, g: None
        )
    with pytest.raises(ValueError, match="grad_accum_steps must be an integer >= 1, got 0"):
        TrainerConfig(grad_accum_steps=0)


@pytest.mark.parametrize("value", ["0", "soon", "-3"])
def test_bad_timeout(monkeypatch, value):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=f"{distributed.TIMEOUT_ENV} must be a whole number of seconds >= 1"):
        distributed.timeout_seconds()


def test_cli_train_on_two_ranks_equals_accumulation(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    command = ["-m", "mini_llm", "train", "--preset", "tiny", "--max-steps", "6", "--no-progress", "--run-dir"]
    done = subprocess.run([*TORCHRUN, *command, str(two)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("trained 6 steps") == 1 and "x 2 processes" in done.stdout  # rank 0 alone prints
    done = subprocess.run([sys.executable, *command, str(one), "--grad-accum-steps", "2"], capture_output=True,
                          text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})  # as torchrun's ranks
    assert done.returncode == 0, done.stderr
    a, b = load_file(two / "checkpoint.safetensors"), load_file(one / "checkpoint.safetensors")
    assert a.keys() - b.keys() == {"rng.model_cpu@rank1"}  # rank 1's dropout state
    assert all(torch.equal(a[name], b[name]) for name in b), [n for n in b if not torch.equal(a[n], b[n])]
    sharded = tmp_path / "sharded"  # --fsdp: the same run with the parameters sharded
    done = subprocess.run([*TORCHRUN, *command, str(sharded), "--fsdp"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    c = load_file(sharded / "checkpoint.safetensors")
    assert c.keys() == a.keys() and all(torch.equal(a[name], c[name]) for name in b)


def test_zoo_train_on_two_ranks(tmp_path):
    command = ["-m", "mini_llm", "zoo", "train", "--preset-set", "test", "--sizes", "1x16", "--seeds", "0",
               "--no-progress", "--cache-dir"]
    done = subprocess.run([*TORCHRUN, *command, str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("zoo trained in") == 1 and "on 2 processes" in done.stdout  # rank 0 alone prints
    done = subprocess.run([sys.executable, *command, str(tmp_path / "one")], capture_output=True, text=True,
                          timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    two, one = (sorted((tmp_path / name / "zoo/test/1x16-seed0").glob("weights_step*")) for name in ("two", "one"))
    assert [path.name for path in two] == [path.name for path in one] and len(one) == 4  # the kept budget shares
    for a, b in zip(two, one, strict=True):  # two half-batch means vs one full-batch mean: float rounding, through Adam
        a, b = load_file(a), load_file(b)
        assert max((a[name] - b[name]).abs().max().item() for name in b) < 1e-3
