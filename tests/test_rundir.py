"""The one run-directory convention (train.rundir, jsonfiles.format_json) and fine-tuning as a Trainer configuration."""

import copy
import json
import random
from pathlib import Path

import pytest
import torch

from mini_llm.jsonfiles import format_json
from mini_llm.nn import BertConfig, BertForSequenceClassification
from mini_llm.tasks.classify import FineTuneConfig, SpecialVocabulary, TextClassificationDataset, fine_tune, make_loader
from mini_llm.tasks.classify.finetune import adamw, linear_warmup_decay, predict_logits
from mini_llm.tasks.classify.imbalance import weighted_cross_entropy
from mini_llm.tasks.classify.mlm import CharEncoder
from mini_llm.train.rundir import read_record, run_dir, staging_dir, swap_in, write_json, write_record

RESULTS = Path(__file__).resolve().parent.parent / "results"
ONE_LINE = {"classify_imbalance.json": ("log_odds",), "decoding_3x144.json": ()}  # the rest: classifier evaluations
EVAL_LISTS = ("predictions", "positive_probability")


def _random_json(rng: random.Random, depth: int = 0):
    if depth > 3 or rng.random() < 0.4:
        return rng.choice([1, -2, 0.1, 1e300, float("nan"), float("inf"), 'é"\\\n', None, True, False, "", 3.0])
    if rng.random() < 0.5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["a", "β", "c", 1, None, True, 2.5]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_format_json_is_json_dumps_with_chosen_lists_on_one_line():
    rng = random.Random(0)
    for _ in range(500):
        value = _random_json(rng)
        for indent in (1, 2):
            assert format_json(value, indent) == json.dumps(value, ensure_ascii=False, indent=indent) + "\n"
        assert format_json(value, None) == json.dumps(value, ensure_ascii=False) + "\n"
    text = format_json({"format": "x", "runs": [{"log_odds": [1.5, -2.0], "name": "人"}]}, 1, ("log_odds",))
    assert text == '{\n "format": "x",\n "runs": [\n  {\n   "log_odds": [1.5,-2.0],\n   "name": "人"\n  }\n ]\n}\n'


@pytest.mark.parametrize("name", sorted(path.name for path in RESULTS.glob("*.json")))
def test_committed_results_are_written_back_byte_for_byte(name):
    """The one writer reproduces every committed results file (written by the three writers it replaced)."""
    text = (RESULTS / name).read_text(encoding="utf-8")
    assert format_json(json.loads(text), 1, ONE_LINE.get(name, EVAL_LISTS)) == text


def test_run_dir_records_and_staged_swap(monkeypatch, tmp_path):
    monkeypatch.setenv("MINI_LLM_CACHE", str(tmp_path / "cache"))
    assert run_dir("classify", "nb-tiny-seed0") == tmp_path / "cache" / "classify" / "nb-tiny-seed0"
    assert run_dir("zoo", cache_dir=tmp_path / "c") == tmp_path / "c" / "zoo"
    run = tmp_path / "run"
    run.mkdir()
    write_record(run / "run.json", {"format": "mini_llm.test/1", "n": 1})
    record = read_record(run / "run.json", "mini_llm.test/1", "a test run", {"n": int})
    assert record == {"format": "mini_llm.test/1", "n": 1}
    with pytest.raises(ValueError, match="is not a test run \\(format 'mini_llm.test/2' expected\\)"):
        read_record(run / "run.json", "mini_llm.test/2", "a test run")
    with pytest.raises(ValueError, match="entry n must be str"):
        read_record(run / "run.json", "mini_llm.test/1", "a test run", {"n": str})
    with pytest.raises(ValueError, match="'format' string"):
        write_record(run / "bad.json", {"n": 1})
    new = staging_dir(run)
    assert new == tmp_path / "run.new"
    new.mkdir()
    write_json(new / "run.json", {"format": "mini_llm.test/1", "n": 2}, indent=None)
    swap_in(new, run)
    assert (run / "run.json").read_text(encoding="utf-8") == '{"format": "mini_llm.test/1", "n": 2}\n'
    assert not new.exists() and not (tmp_path / "run.old").exists()


GOOD = ["质量很好", "物流很快", "非常满意", "好评推荐", "很好用的", "包装精美", "价格实惠", "还会再买"]
BAD = ["太差了", "再也不买", "质量很差", "物流太慢", "非常失望", "不推荐的", "坏了退货", "差评差评"]


def _reviews(n: int) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for i in range(n):
        pool = GOOD if i % 2 else BAD
        texts.append(pool[(i * 3) % 8] + pool[(i + 5) % 8][: 1 + i % 3])
        labels.append(i % 2)
    return texts, labels


def reference_fine_tune(model, train_loader, validation_loader, config, class_weights=None) -> list[dict]:
    """The fine-tuning loop as it was written before it became a Trainer configuration: AdamW + LambdaLR, clipping."""
    torch.manual_seed(config.seed)  # dropout masks
    optimizer = adamw(model, config.lr, config.weight_decay)
    total = config.epochs * len(train_loader)
    warmup = int(config.warmup_fraction * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_warmup_decay(s, total, warmup))
    history, best_accuracy, best_state, window, step = [], -1.0, None, [], 0
    model.train()
    for _ in range(config.epochs):
        for batch in train_loader:
            out = model(**batch)
            loss = out.loss if class_weights is None else weighted_cross_entropy(out.logits, batch["labels"],
                                                                                 class_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            schedule.step()
            step += 1
            window.append(loss.item())
            if step % config.eval_every and step != total:
                continue
            logits, labels, val_loss = predict_logits(model, validation_loader)
            val_accuracy = (logits.argmax(-1) == labels).double().mean().item()
            history.append({"step": step, "train_loss": sum(window) / len(window), "val_loss": val_loss,
                            "val_accuracy": val_accuracy})
            window = []
            if val_accuracy > best_accuracy:
                best_accuracy, best_state = val_accuracy, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return history


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", ["plain", "weighted"])
def test_fine_tune_reproduces_the_numbers_of_its_own_loop(case):
    """fine_tune (a Trainer configuration) gives the same bits as the plain loop it replaced, run here beside it.

    2 epochs of 10 steps with dropout, warm-up, clipping at 0.5, class weights or not; both runs on this machine,
    so the comparison is exact on any CPU.
    """
    train, validation = _reviews(40), _reviews(12)
    vocabulary = SpecialVocabulary.from_texts(train[0], min_count=1)
    config = BertConfig(vocab_size=vocabulary.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, pad_token_id=vocabulary.pad_id)
    settings = FineTuneConfig(epochs=2, batch_size=4, lr=1e-2, max_length=16, eval_every=2, grad_clip=0.5, seed=0)
    encode = CharEncoder(vocabulary, settings.max_length)
    weights = torch.tensor([1.0, 3.0]) if case == "weighted" else None
    runs = []
    for train_loop in (fine_tune, reference_fine_tune):
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
        loaders = (make_loader(TextClassificationDataset(*train), encode, 4, shuffle=True, seed=0),
                   make_loader(TextClassificationDataset(*validation), encode, 8))
        history = train_loop(model, *loaders, settings, class_weights=weights)
        history = [{k: v for k, v in h.items() if k != "seconds"} for h in history]
        runs.append((model.state_dict(), history, torch.get_rng_state()))
    (ours, our_history, our_rng), (ref, ref_history, ref_rng) = runs
    assert [h["step"] for h in our_history] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert our_history == ref_history
    assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ours)
    assert torch.equal(our_rng, ref_rng)
