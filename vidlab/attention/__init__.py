"""Attention capture: per-word heat maps (cross-attention) and frame × frame attention (temporal / joint)."""
from .capture import KINDS, AttentionAggregator, AttentionCapture, CaptureProcessor, Layer, list_layers
from .maps import WordMaps, box_mass_ratio
from .words import Word, find_word, merge_subword_tokens, prompt_words, split_words

__all__ = ["AttentionCapture", "AttentionAggregator", "CaptureProcessor", "Layer", "list_layers", "KINDS",
           "WordMaps", "box_mass_ratio", "Word", "prompt_words", "split_words", "find_word", "merge_subword_tokens"]
