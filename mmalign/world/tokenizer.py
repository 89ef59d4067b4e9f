"""A word-level tokenizer for the lab's closed vocabulary, with a ChatML template and an image token.

It is a plain ``PreTrainedTokenizerFast`` (saved as ``tokenizer.json``), so ``AutoTokenizer`` reloads it without
mmalign. Text is lower-cased and split on whitespace and punctuation; unknown words map to ``<unk>``.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mmalign.world.language import VOCAB

PAD, UNK, IM_START, IM_END, IMAGE = "<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>"
SPECIALS = (PAD, UNK, IM_START, IM_END, IMAGE)

# Handles string content and the list form ``[{"type": "image"}, {"type": "text", "text": ...}]`` that
# TRL-style collators send. Images are placed where the message puts them.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(words: tuple[str, ...] = VOCAB, extra_special: tuple[str, ...] = (),
                    chat_template: str = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over ``words``; specials first (``<pad>`` = 0), then ``extra_special``, then words."""
    specials = list(SPECIALS) + [t for t in extra_special if t not in SPECIALS]
    vocab = {tok: i for i, tok in enumerate(specials + [w for w in words if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token=IM_END, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[IM_START, IMAGE] + [t for t in extra_special if t not in SPECIALS],
        chat_template=chat_template,
    )
    fast.padding_side = "left"  # generation pads on the left; training collators set sides explicitly
    return fast
