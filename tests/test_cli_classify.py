"""`mini-llm classify train | eval`: a tiny round trip, and the errors that name the argument."""

import json

import pytest
from cli_runner import run_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny naive-Bayes and a tiny mini-llm run in a temporary cache."""
    cache = tmp_path_factory.mktemp("cache")
    for model in ("naive-bayes", "mini-llm"):
        code, out, err = run_main(
            ["classify", "train", "--model", model, "--preset", "tiny", "--cache-dir", str(cache), "--no-progress"]
        )
        assert code == 0, err
        assert f"classify/{model}-tiny-seed0" in out
    return cache


@pytest.mark.parametrize("model", ["naive-bayes", "mini-llm"])
def test_train_then_eval(trained, model, tmp_path):
    out_file = tmp_path / "metrics.json"
    code, out, err = run_main(
        ["classify", "eval", "--model", model, "--preset", "tiny", "--cache-dir", str(trained), "--out", str(out_file)]
    )
    assert code == 0, err
    assert f"{model} on the test split (1737 reviews): accuracy" in out
    result = json.loads(out_file.read_text(encoding="utf-8"))
    assert result["model"] == model and result["split"] == "test" and len(result["predictions"]) == 1737
    assert result["command"].startswith("mini-llm classify eval --model")
    assert result["curves"]


def test_eval_texts(trained):
    args = ["classify", "eval", "--model", "naive-bayes", "--preset", "tiny", "--cache-dir", str(trained)]
    code, out, _ = run_main([*args, "--text", "太差了，再也不买", "--text", "很好"])
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("negative\tP(positive) = ")


def test_train_refuses_to_overwrite(trained):
    args = ["classify", "train", "--model", "naive-bayes", "--preset", "tiny", "--cache-dir", str(trained)]
    code, _, err = run_main(args)
    assert code == 2 and "already holds a trained run" in err and "--overwrite" in err
    assert run_main([*args, "--overwrite", "--no-progress"])[0] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", "eval", "--model", "svm"], "argument --model: invalid choice: 'svm'"),
        (["classify", "train", "--model", "bert-hf", "--preset", "huge"], "argument --preset: unknown preset 'huge'"),
        (["classify", "eval", "--model", "naive-bayes", "--text", " "], "argument --text: must not be empty"),
        (["classify", "train"], "the following arguments are required: --model"),
    ],
)
def test_argument_errors(argv, message):
    code, _, err = run_main(argv)
    assert code == 2 and message in err


def test_missing_checkpoint(tmp_path, trained):
    code, _, err = run_main(["classify", "eval", "--model", "bert-hf", "--checkpoint", str(tmp_path / "nowhere")])
    assert code == 2
    assert "argument --checkpoint: no trained classifier in" in err and "classify train --model bert-hf" in err
    code, _, err = run_main(
        ["classify", "eval", "--model", "bert-hf", "--preset", "tiny", "--cache-dir", str(tmp_path)]
    )
    assert code == 2 and "argument --model/--preset/--seed: no trained classifier" in err
    run_dir = trained / "classify" / "naive-bayes-tiny-seed0"
    code, _, err = run_main(["classify", "eval", "--model", "mini-llm", "--checkpoint", str(run_dir)])
    assert code == 2 and "argument --model:" in err and "holds a naive-bayes run" in err


def test_imbalance_sweep(tmp_path):
    from mini_llm.tasks.classify.imbalance_sweep import read_imbalance

    out_file = tmp_path / "imbalance.json"
    argv = ["classify", "imbalance", "--preset", "tiny", "--ratios", "4", "--out", str(out_file), "--no-progress"]
    code, out, err = run_main(argv)
    assert code == 0, err
    assert "ratio 1:4 none: test accuracy" in out and "ratio 1:4 weighted: test accuracy" in out
    result = read_imbalance(out_file)
    assert result["command"] == "mini-llm " + " ".join(argv)
    assert [run["method"] for run in result["runs"]] == ["none", "weighted"]
    none, weighted = result["runs"]
    assert none["class_weights"] is None and len(weighted["class_weights"]) == 2
    assert none["class_counts"][0] * 4 == pytest.approx(none["class_counts"][1], abs=2)
    assert len(none["log_odds"]) == 1737 and len(none["history"]) == 1  # measured once, after the last step


@pytest.mark.parametrize(
    ("ratios", "message"), [("0.5", "argument --ratios: must be a number >= 1"), ("4,", "without empty items")]
)
def test_imbalance_ratio_errors(tmp_path, ratios, message):
    code, _, err = run_main(["classify", "imbalance", "--ratios", ratios, "--out", str(tmp_path / "x.json")])
    assert code == 2 and message in err
