"""The chat: one KV cache across turns equals reading the conversation afresh; streaming; the CLI in 4 bits."""

import subprocess
import sys

import pytest
import torch

from mini_llm import kernels
from mini_llm.interop.gguf import gguf_tokenizer, read_gguf, render_chat, smollm2_path
from mini_llm.nn.llama import Llama, LlamaConfig
from mini_llm.quant import quantize_model
from mini_llm.tasks.chat import Chat, ChatSettings

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reader():
    return read_gguf(smollm2_path())


def tiny_chat(reader, **settings) -> Chat:
    """SmolLM2's tokenizer and chat template on a tiny random Llama of the same vocabulary."""
    tokenizer = gguf_tokenizer(reader)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tokenizer.get_vocab_size(), block_size=512, n_layer=2, n_head=4,
                              n_kv_head=2, n_embd=16, n_inner=32)).eval()
    return Chat(model, tokenizer, lambda messages: render_chat(reader, messages), {2},
                ChatSettings(**({"max_new_tokens": 12, "seed": 0} | settings)))


def test_cache_across_turns_equals_a_fresh_forward(reader):
    chat = tiny_chat(reader)
    pieces = list(chat.reply("Hello!"))
    assert "".join(pieces) == chat.messages[-1]["content"] and chat.messages[-1]["role"] == "assistant"
    list(chat.reply("And a second question?"))
    assert len(chat.messages) == 4 and chat.cache[0][0].size(2) == len(chat.tokens)
    with torch.no_grad():  # the cached keys of every token equal those of one forward over all of them
        fresh = chat.model(torch.tensor([chat.tokens]), use_cache=True).past_key_values
    for (k, v), (k_ref, v_ref) in zip(chat.cache, fresh, strict=True):
        assert torch.allclose(k, k_ref, atol=1e-5) and torch.allclose(v, v_ref, atol=1e-5)
    prompt = render_chat(reader, chat.messages[:3])  # the second turn's prompt is a prefix of what was read
    assert chat.tokens[: len(chat.tokenizer.encode(prompt).ids)] == chat.tokenizer.encode(prompt).ids


def test_greedy_replies_repeat_and_stop_tokens_end_them(reader):
    first, second = tiny_chat(reader, greedy=True), tiny_chat(reader, greedy=True)
    assert list(first.reply("Hi")) == list(second.reply("Hi"))
    stopper = tiny_chat(reader, greedy=True)
    stopper.stop_ids = set(range(stopper.tokenizer.get_vocab_size()))  # every token ends the reply
    assert list(stopper.reply("Hi")) == [] and stopper.messages[-1] == {"role": "assistant", "content": ""}


def test_fused_decoding_gives_the_eager_replies(reader):
    tokenizer = gguf_tokenizer(reader)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tokenizer.get_vocab_size(), block_size=512, n_layer=2, n_head=4,
                              n_kv_head=2, n_embd=64, n_inner=128)).eval()
    quantize_model(model, 4, "nf", 32)
    chats = [Chat(model, tokenizer, lambda messages: render_chat(reader, messages), {2},
                  ChatSettings(max_new_tokens=10, greedy=True), fused=fused) for fused in (False, None)]
    assert chats[0].decoder is None and chats[1].decoder is not None  # None: fused when the model allows it
    for text in ("Hello!", "And then?"):
        assert list(chats[0].reply(text)) == list(chats[1].reply(text))
    assert chats[0].tokens == chats[1].tokens and chats[1].decoder.length == len(chats[1].tokens)
    plain = Llama(LlamaConfig(vocab_size=10, n_layer=1, n_head=4, n_kv_head=2, n_embd=64, n_inner=128))
    with pytest.raises(ValueError, match="fused=True needs a model FusedLlamaDecoder can run: model.layers.0"):
        Chat(plain, tokenizer, str, {2}, fused=True)


@pytest.mark.skipif(not kernels.HAS_INT8_DOT, reason="backend 'int8' needs AVX-512 VNNI or AVX2")
def test_int8_activation_chats_decode_fused_with_the_int8_kernels(reader):
    tokenizer = gguf_tokenizer(reader)
    torch.manual_seed(1)
    model = Llama(LlamaConfig(vocab_size=tokenizer.get_vocab_size(), block_size=512, n_layer=2, n_head=4,
                              n_kv_head=2, n_embd=128, n_inner=256)).eval()
    quantize_model(model, 4, "nf", 64, backend="int8")
    chats = [Chat(model, tokenizer, lambda messages: render_chat(reader, messages), {2},
                  ChatSettings(max_new_tokens=10, greedy=True), fused=fused) for fused in (False, None)]
    assert chats[1].decoder.backend == "int8"  # the layers' backend: int8 activations in the compiled step too
    assert list(chats[0].reply("Hello!")) == list(chats[1].reply("Hello!"))


def test_cli_int8_activations_need_four_bits():
    done = subprocess.run([sys.executable, "-m", "mini_llm", "chat", "--bits", "8", "--int8-activations", "--prompt",
                           "Hi"], capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "--int8-activations needs --bits 4" in done.stderr, done.stderr


def test_a_conversation_longer_than_the_context_is_refused(reader):
    chat = tiny_chat(reader, max_new_tokens=500)
    with pytest.raises(ValueError, match="exceeds the model's context of 512 tokens"):
        list(chat.reply("x" * 40))


def test_cli_answers_in_four_bits():
    done = subprocess.run([sys.executable, "-m", "mini_llm", "chat", "--bits", "4", "--greedy", "--max-new-tokens",
                           "8", "--threads", "2", "--prompt", "What is the capital of France?"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout and "4-bit nf (blocks of 64)" in done.stderr and "FusedLlamaDecoder" in done.stderr
