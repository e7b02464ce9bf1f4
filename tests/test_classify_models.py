"""The classifiers of chapter 5: tokenizer, padded batches, MLM batches, fine-tuning, run directories, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mini_llm.data import CharTokenizer
from mini_llm.nn import BertConfig, BertForSequenceClassification
from mini_llm.tasks.classify import (
    FineTuneConfig,
    MaskedWindows,
    SampledBatches,
    SpecialVocabulary,
    TextClassificationDataset,
    accuracy,
    batch_loss,
    evaluate_run,
    fine_tune,
    hf_bert_classifier,
    load_classifier,
    make_loader,
    predict_texts,
    read_eval,
    train_char_tokenizer,
    train_run,
    write_eval,
)
from mini_llm.tasks.classify.finetune import linear_warmup_decay
from mini_llm.tasks.classify.hf_tokenizer import SPECIAL_TOKENS, HFEncoder
from mini_llm.tasks.classify.mlm import IGNORE, CharEncoder
from mini_llm.tasks.classify.presets import get_preset
from mini_llm.tasks.classify.runs import default_run_dir, review_split

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["质量很好，物流也快", "太差了，再也不买", "ＯＫ 的 book", "好"]


def test_char_tokenizer_is_deterministic_and_character_level():
    first, second = train_char_tokenizer(TEXTS, min_frequency=1), train_char_tokenizer(TEXTS[::-1], min_frequency=1)
    assert first.get_vocab() == second.get_vocab()  # re-numbered: independent of the trainer's tie order
    assert [first.convert_ids_to_tokens(i) for i in range(5)] == list(SPECIAL_TOKENS)
    tokens = first.convert_ids_to_tokens(first("ＯＫ好书")["input_ids"])
    assert tokens == ["[CLS]", "o", "k", "好", "[UNK]", "[SEP]"]  # NFKC + lower case; 书 was never seen


def test_padding_and_attention_mask():
    tokenizer = train_char_tokenizer(TEXTS, min_frequency=1)
    loader = make_loader(TextClassificationDataset(TEXTS, [1, 0, 1, 1]), HFEncoder(tokenizer, max_length=6), 4)
    batch = next(iter(loader))
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (4, 6)  # truncated to max_length
    assert batch["labels"].tolist() == [1, 0, 1, 1]
    assert batch["attention_mask"][3].tolist() == [1, 1, 1, 0, 0, 0]  # "好": [CLS] 好 [SEP] then padding
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()


def test_shared_vocabulary_encoding():
    vocabulary = SpecialVocabulary(CharTokenizer.from_texts(TEXTS))
    batch = CharEncoder(vocabulary, max_length=4)(["好", "质量很好"])
    assert batch["input_ids"].tolist()[0][:2] == [vocabulary.cls_id, vocabulary.tokenizer.encode("好")[0]]
    assert batch["input_ids"].shape == (2, 4) and batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["input_ids"][0, 2] == vocabulary.pad_id == vocabulary.vocab_size - 3


def test_sampled_batches_draw_with_the_trainers_generator():
    vocabulary = SpecialVocabulary(CharTokenizer.from_texts(TEXTS))
    dataset = TextClassificationDataset(TEXTS, [1, 0, 1, 1])
    batch, labels = SampledBatches(dataset, CharEncoder(vocabulary, max_length=6))(5, torch.Generator().manual_seed(7))
    index = torch.randint(4, (5,), generator=torch.Generator().manual_seed(7)).tolist()  # the same draws by hand
    assert labels.tolist() == [[1, 0, 1, 1][i] for i in index] and batch["labels"] is labels
    rows = [[vocabulary.cls_id, *vocabulary.tokenizer.encode(TEXTS[i][:5])] for i in index]  # [CLS] + 5 characters
    width = max(map(len, rows))  # padded to the longest row of the batch, not to max_length
    assert batch["input_ids"].tolist() == [row + [vocabulary.pad_id] * (width - len(row)) for row in rows]
    assert batch["attention_mask"].tolist() == [[1] * len(row) + [0] * (width - len(row)) for row in rows]


def test_accuracy_and_batch_loss_by_hand():
    vocabulary = SpecialVocabulary(CharTokenizer.from_texts(TEXTS))
    config = BertConfig(vocab_size=vocabulary.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=8, pad_token_id=vocabulary.pad_id)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).train()  # dropout on: accuracy must switch it off
    labels = [1, 0, 1, 1]
    loader = make_loader(TextClassificationDataset(TEXTS, labels), CharEncoder(vocabulary, max_length=8), 3)
    with torch.no_grad():
        logits = torch.cat([model.eval()(**{k: v for k, v in b.items() if k != "labels"}).logits for b in loader])
        expected = (logits.argmax(-1) == torch.tensor(labels)).double().mean().item()
        model.train()
        assert accuracy(model, loader) == expected and model.training  # the mode is restored
        batch = next(iter(loader))
        model.eval()
        by_hand = torch.nn.functional.cross_entropy(model(batch["input_ids"], batch["attention_mask"]).logits,
                                                    batch["labels"])
        assert batch_loss(model, batch, batch["labels"]).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_masked_windows_follow_bert():
    vocabulary = SpecialVocabulary(CharTokenizer.from_texts(["abcdefghij" * 10]))
    ids = torch.tensor(vocabulary.tokenizer.encode("abcdefghij" * 500))
    inputs, labels = MaskedWindows(ids, vocabulary, seq_len=33)(400, torch.Generator().manual_seed(0))  # (B, T)
    assert (inputs[:, 0] == vocabulary.cls_id).all() and (labels[:, 0] == IGNORE).all()
    chosen = labels != IGNORE
    assert chosen[:, 1:].float().mean().item() == pytest.approx(0.15, abs=0.01)
    masked = (inputs[chosen] == vocabulary.mask_id).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.02)
    with pytest.raises(ValueError, match="at least seq_len"):
        MaskedWindows(ids[:10], vocabulary, seq_len=33)


def test_learning_rate_schedule():
    factors = [linear_warmup_decay(step, total=10, warmup=2) for step in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0] and factors[-1] == pytest.approx(0.125) and max(factors) == 1.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run of each model (seconds)."""
    root = tmp_path_factory.mktemp("classify")
    return {
        model: (root / model, train_run(model, "tiny", root / model))
        for model in ("naive-bayes", "bert-hf", "mini-llm")
    }


@pytest.mark.parametrize("model", ["naive-bayes", "bert-hf", "mini-llm"])
def test_run_round_trip(runs, model, tmp_path):
    run_dir, info = runs[model]
    saved = {path.name for path in run_dir.iterdir()}
    assert not any(name.endswith((".pt", ".pth", ".bin", ".pkl")) for name in saved)  # safetensors and JSON only
    assert json.loads((run_dir / "run.json").read_text())["model"] == model
    result = evaluate_run(run_dir, "test", command="test")
    n = len(review_split("test")[0])
    assert result["metrics"]["n"] == len(result["predictions"]) == len(result["positive_probability"]) == n
    assert 0.3 < result["metrics"]["accuracy"]["value"] < 1
    assert sum(map(sum, result["metrics"]["confusion_matrix"])) == n
    assert read_eval(write_eval(result, tmp_path / "eval.json")) == json.loads(json.dumps(result))
    probabilities = predict_texts(run_dir, TEXTS)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    predictor, _ = load_classifier(run_dir)  # the same predictions after loading again
    np.testing.assert_allclose(predictor.predict_proba(TEXTS), probabilities, atol=1e-6)


def test_a_bert_hf_run_holding_a_pickle_is_refused(runs, tmp_path):
    run_dir = Path(shutil.copytree(runs["bert-hf"][0], tmp_path / "run"))
    model_dir = run_dir / "model"
    torch.save(load_file(str(model_dir / "model.safetensors")), model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="incomplete or corrupt bert-hf run: .*model.safetensors") as error:
        load_classifier(run_dir)
    assert "\n" not in str(error.value)


def test_neural_runs_keep_the_best_validation_step(runs):
    for model in ("bert-hf", "mini-llm"):
        _, info = runs[model]
        steps = [record["step"] for record in info["history"]]
        assert steps == sorted(steps) and steps[-1] == -(-get_preset("tiny").max_train // 50)  # ceil(200 / 50)
    assert len(runs["mini-llm"][1]["pretrain_history"]) == 3  # 3 steps, one evaluation each


def test_training_is_reproducible(runs, tmp_path):
    again = train_run("bert-hf", "tiny", tmp_path / "again")
    assert again["history"] == [
        {**record, "seconds": again["history"][i]["seconds"]} for i, record in enumerate(runs["bert-hf"][1]["history"])
    ]


def test_bad_input(runs, tmp_path):
    with pytest.raises(ValueError, match="unknown model 'svm'"):
        train_run("svm", "tiny", tmp_path / "svm")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        train_run("naive-bayes", "huge", tmp_path / "nb")
    with pytest.raises(ValueError, match="already holds a trained run"):
        train_run("naive-bayes", "tiny", runs["naive-bayes"][0])
    with pytest.raises(FileNotFoundError, match="the directory does not exist"):
        evaluate_run(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="run.json does not exist"):
        load_classifier(tmp_path / "half")
    with pytest.raises(ValueError, match="split must be one of"):
        evaluate_run(runs["naive-bayes"][0], "train")
    with pytest.raises(ValueError, match="non-empty list of non-blank strings"):
        predict_texts(runs["naive-bayes"][0], [" "])
    with pytest.raises(ValueError, match="texts must not be empty"):
        TextClassificationDataset([], [])
    with pytest.raises(ValueError, match="at least one non-blank text"):
        train_char_tokenizer(["", " "])
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        FineTuneConfig(epochs=0)


def test_default_run_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MINI_LLM_CACHE", str(tmp_path))
    assert default_run_dir("bert-hf", "book") == tmp_path / "classify" / "bert-hf-book-seed0"
    assert default_run_dir("mini-llm", "tiny", 3, tmp_path / "c") == tmp_path / "c" / "classify" / "mini-llm-tiny-seed3"


def test_evaluating_does_not_change_training():
    """Loaders never draw from torch's global generator, so the evaluation schedule leaves the dropout masks alone."""
    histories = []
    for eval_every in (1, 4):
        preset = get_preset("tiny")
        config = FineTuneConfig(epochs=1, batch_size=50, max_length=32, eval_every=eval_every)
        tokenizer = train_char_tokenizer(review_split("train", preset.max_train)[0])
        encode = HFEncoder(tokenizer, config.max_length)
        model = hf_bert_classifier(tokenizer, preset.size, config.max_length)
        train = make_loader(TextClassificationDataset(*review_split("train", 200)), encode, 50, shuffle=True)
        validation = make_loader(TextClassificationDataset(*review_split("validation", 100)), encode, 50)
        histories.append(fine_tune(model, train, validation, config))
    assert [len(history) for history in histories] == [4, 1]
    assert histories[0][-1]["val_loss"] == histories[1][-1]["val_loss"]  # the same model after the last step
