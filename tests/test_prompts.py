"""One prompt encoding (mscl.engine.models.encode_prompt): BOS exactly once, and a sampled response scored
under exactly the ids it was sampled from, for SmolLM2, Gemma 3 and a Llama-3-style tokenizer."""
from __future__ import annotations

import copy

import pytest

from mscl.engine import decoder, generation
from mscl.engine.models import adds_bos, encode_prompt, encode_prompt_text, format_prompt, load_tokenizer
from mscl.engine.training import encode_pair

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def llama3_style(chat: bool):
    """A word-level tokenizer built offline whose post-processor adds ``<|begin_of_text|>`` (as
    Llama 3's does), with Llama 3's chat template (which writes the BOS itself) or without one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
               "<unk>"]
    words = "what is the capital of france ? question : answer short with a system user assistant".split()
    vocab = {t: i for i, t in enumerate(special + words + ["Question:", "Answer:", "What", "France?"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.add_special_tokens(special)
    core.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                        special_tokens=[("<|begin_of_text|>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                  unk_token="<unk>", pad_token="<|end_of_text|>")
    if chat:
        tok.chat_template = LLAMA3_TEMPLATE
    return tok


TOKENIZERS = {"smollm2": lambda: load_tokenizer("smollm2-135m"), "gemma3": lambda: load_tokenizer("gemma3-270m"),
              "llama3-chat": lambda: llama3_style(chat=True), "llama3-base": lambda: llama3_style(chat=False)}


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_bos_exactly_once_and_sampling_ids_are_training_ids(name):
    tok = TOKENIZERS[name]()
    question = "What is the capital of France?"
    ids = encode_prompt(tok, question)
    bos = tok.bos_token_id
    template_writes_bos = bool(getattr(tok, "chat_template", None)) and format_prompt(tok, question).startswith(
        tok.bos_token or "\0")
    if adds_bos(tok) or template_writes_bos:
        assert ids[0] == bos and ids[1] != bos, ids[:6]  # once in front (SmolLM2 reuses it per turn)
    # what training and reference scoring put in front of a response is the sampling prompt
    pair = encode_pair(tok, question, "Paris", max_length=512)
    assert pair["input_ids"][:pair["prompt_len"]] == encode_prompt_text(tok, format_prompt(tok, question))


def test_llama3_style_text_tokenized_the_naive_way_doubles_its_bos():
    """The failure the one encoding prevents: the template writes BOS and the post-processor adds it."""
    tok = llama3_style(chat=True)
    naive = tok(format_prompt(tok, "What is the capital of France?"))["input_ids"]
    assert naive[:2] == [tok.bos_token_id] * 2
    assert encode_prompt(tok, "What is the capital of France?")[:2] != [tok.bos_token_id] * 2


def test_generation_samples_from_the_training_prompt_ids(tiny, monkeypatch):
    model, tok = tiny
    model = copy.deepcopy(model)
    seen = []
    real = decoder.decode_batch

    def spy(model, prompt_ids, **kw):
        seen.extend(list(p) for p in prompt_ids)
        return real(model, prompt_ids, **kw)

    monkeypatch.setattr(decoder, "decode_batch", spy)
    questions = ["What is 2 + 2?", "Who wrote Hamlet?"]
    generation.sample_responses(model, tok, questions, k=2, temperature=1.0, top_p=0.95, max_new_tokens=3,
                              batch_size=4, seed=0)
    prompts = [encode_pair(tok, q, "x", 256) for q in questions]
    assert sorted(seen) == sorted(p["input_ids"][:p["prompt_len"]] for p in prompts)


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_training_pairs_encode_as_before_the_prompt_and_suffix_were_cached(name):
    """build_examples encodes each question's prompt once and response_suffix reads the vocabulary once
    per tokenizer: the ids are those of encoding every pair on its own with the vocabulary read each
    time (the stage's identity, and its predictions, stay what they were)."""
    from types import SimpleNamespace

    from mscl.engine.models import END_OF_TURN_TOKENS, response_suffix
    from mscl.engine.training import build_examples

    tok = TOKENIZERS[name]()
    vocab = tok.get_vocab()
    uncached = next((t for t in END_OF_TURN_TOKENS if t in vocab), None) if tok.chat_template else None
    assert response_suffix(tok) == (uncached or tok.eos_token or "")
    record = SimpleNamespace(id="r1", question="What is the capital of France?", answer="Paris")
    rows = [{"id": "r1", "responses": [{"response": r, "aligned": r == "Paris"} for r in ("Paris", "Lyon")]}]
    [example] = build_examples(tok, [record], 512, rows)
    alone = [encode_pair(tok, record.question, answer, 512) for answer in ("Paris", "Paris", "Lyon")]
    assert [s["input_ids"] for s in example["sequences"]] == [p["input_ids"] for p in alone]
    assert [s["labels"] for s in example["sequences"]] == [p["labels"] for p in alone]
