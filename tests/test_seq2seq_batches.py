"""mini_llm.train.seq2seq: padded (source, target) batches and the teacher-forcing loss, with the Trainer."""

import pytest
import torch
import torch.nn.functional as F

from mini_llm.nn import Seq2SeqConfig, Seq2SeqTransformer
from mini_llm.train import PairBatches, Trainer, TrainerConfig, pad_sequences, seq2seq_loss


def test_pad_sequences_right_pads_to_the_longest():
    assert pad_sequences([[5, 6], [7], [8, 9, 10]], pad_id=0).tolist() == [[5, 6, 0], [7, 0, 0], [8, 9, 10]]
    with pytest.raises(ValueError, match="empty"):
        pad_sequences([], pad_id=0)


def test_pair_batches_add_bos_and_eos_and_pad():
    batches = PairBatches([[4, 5, 6], [7]], [[8, 9, 10], [11]], pad_id=0, bos_id=1, eos_id=2)
    src, tgt = batches.batch([1, 0])
    assert src.tolist() == [[7, 0, 0], [4, 5, 6]]
    assert tgt.tolist() == [[1, 11, 2, 0, 0], [1, 8, 9, 10, 2]]
    first = batches(8, torch.Generator().manual_seed(0))
    second = batches(8, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # the generator decides the batch
    assert first[0].shape[0] == 8


@pytest.mark.parametrize(
    ("sources", "targets", "message"), [([[4]], [], "as many"), ([], [], "as many"), ([[]], [[5]], "at least one id")]
)
def test_pair_batches_reject_bad_pairs(sources, targets, message):
    with pytest.raises(ValueError, match=message):
        PairBatches(sources, targets)


def small_model(seed: int = 0) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    config = Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=20, block_size=12, d_model=16, n_head=2, d_ff=32,
                           n_encoder_layers=1, n_decoder_layers=1, dropout=0.0)  # fmt: skip
    return Seq2SeqTransformer(config).eval()


def test_loss_is_teacher_forcing_cross_entropy_over_non_padding_targets():
    model = small_model()
    src, tgt = PairBatches([[4, 5, 6], [7, 8]], [[9, 10, 11], [12]]).batch([0, 1])
    loss = seq2seq_loss(model, src, tgt)
    # the same loss from each example alone (no padding at all), averaged over all predicted tokens
    total, count = 0.0, 0
    for s, t in [([4, 5, 6], [1, 9, 10, 11, 2]), ([7, 8], [1, 12, 2])]:
        logits = model(torch.tensor([s]), torch.tensor([t[:-1]])).logits[0]  # (T, V)
        total += F.cross_entropy(logits, torch.tensor(t[1:]), reduction="sum").item()
        count += len(t) - 1
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_trainer_learns_to_copy_with_the_seq2seq_loss():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 6, (200,), generator=generator).tolist()
    sources = [torch.randint(3, 20, (n,), generator=generator).tolist() for n in lengths]
    batches = PairBatches(sources, sources)  # the target is the source: a copy task
    model = small_model().train()
    config = TrainerConfig(max_steps=300, batch_size=32, lr=1e-2, warmup_steps=20, min_lr=1e-3, eval_interval=0,
                           seed=0, progress=False)  # fmt: skip
    history = Trainer(model, config, batches, loss_fn=seq2seq_loss).train()
    final = sum(record["train_loss"] for record in history[-20:]) / 20
    assert final < 0.2 * history[0]["train_loss"]  # from ln(20) ~ 3.0 to well below 0.6
