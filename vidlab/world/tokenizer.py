"""The zoo's word-level tokenizer: the shapes world's vocabulary, motion phrases as tokens of their own.

>>> tok = build_tokenizer()
>>> tok.convert_ids_to_tokens(tok("a red circle moves left").input_ids)
['<bos>', 'a', 'red', 'circle', 'moves', 'go_left', '<eos>']
"""
from __future__ import annotations

from .captions import MOTION_PHRASES, vocabulary

MAX_TOKENS = 16  # the zoo's text encoder reads at most this many tokens, <bos> and <eos> included


def build_tokenizer():
    """Word-level tokenizer over the captions' vocabulary, as a PreTrainedTokenizerFast."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # motion phrases become motion tokens ('moves left' -> 'moves go_left'), see captions.motion_token
    tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex(rf"\b{phrase}\b"), token)
                                           for phrase, token in MOTION_PHRASES])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 1), ("<eos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>", model_max_length=MAX_TOKENS)
