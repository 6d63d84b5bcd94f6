"""Words, not tokens: the prompt's words and the token positions each one was split into.

A CLIP BPE tokenizer splits "triangle" into "tri" + "angle</w>"; a SentencePiece tokenizer
(T5, Wan) into "▁tri" + "angle". Heat maps are shown per word, so the tokens of a word are
merged back. Two ways, tried in order:
1. a fast tokenizer's character offsets: a token belongs to the word its first character is in;
2. otherwise the word markers in the token strings: "</w>" ends a word (CLIP BPE), "▁" or "Ġ"
   starts one (SentencePiece, GPT-2 byte-level); the merged pieces are then matched to the
   prompt's words in order.

>>> from vidlab.world.tokenizer import build_tokenizer
>>> [(w.text, w.tokens) for w in prompt_words("a red circle", build_tokenizer())]
[('a', (1,)), ('red', (2,)), ('circle', (3,))]
"""
from __future__ import annotations

import dataclasses
import re

# a word is a run of letters/digits (with inner apostrophes); any other visible character stands alone
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")
_END_MARKERS = ("</w>",)
_START_MARKERS = ("▁", "Ġ")


@dataclasses.dataclass(frozen=True)
class Word:
    """One word of a prompt: its text, its position among the words, its token positions."""

    text: str
    index: int
    tokens: tuple[int, ...]  # positions in the encoded sequence (after the BOS token, if any)
    start: int = 0           # character span in the prompt
    end: int = 0


def split_words(prompt: str) -> list[tuple[str, int, int]]:
    """The prompt's words as (text, start, end); punctuation marks are words of their own."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(prompt)]


def _max_length(tokenizer) -> int | None:
    n = getattr(tokenizer, "model_max_length", None)
    return n if isinstance(n, int) and n < 1_000_000 else None


def _words_from_offsets(prompt: str, tokenizer) -> list[Word] | None:
    """Words from a fast tokenizer's offsets; None if the tokenizer gives no offsets."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    enc = tokenizer(prompt, truncation=_max_length(tokenizer) is not None, max_length=_max_length(tokenizer),
                    return_offsets_mapping=True, return_special_tokens_mask=True)
    spans = split_words(prompt)
    positions: list[list[int]] = [[] for _ in spans]
    for pos, ((start, end), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
        if special or end <= start:
            continue
        # the word holding the token's first visible character
        first = start + len(prompt[start:end]) - len(prompt[start:end].lstrip())
        for i, (_, ws, we) in enumerate(spans):
            if ws <= first < we:
                positions[i].append(pos)
                break
    return [Word(text, i, tuple(p), ws, we) for i, ((text, ws, we), p) in enumerate(zip(spans, positions)) if p]


def merge_subword_tokens(tokens: list[str], special: set[str] = frozenset()) -> list[tuple[str, tuple[int, ...]]]:
    """Group token strings into words by their markers -> [(piece text, token positions)].

    >>> merge_subword_tokens(["<s>", "a</w>", "tri", "angle</w>", "</s>"], special={"<s>", "</s>"})
    [('a', (1,)), ('triangle', (2, 3))]
    >>> merge_subword_tokens(["▁a", "▁tri", "angle", "</s>"], special={"</s>"})
    [('a', (0,)), ('triangle', (1, 2))]
    """
    words: list[tuple[str, list[int]]] = []
    open_word = False  # the last word may still take pieces
    for pos, tok in enumerate(tokens):
        if tok in special:
            open_word = False
            continue
        starts = tok.startswith(_START_MARKERS)
        ends = tok.endswith(_END_MARKERS)
        text = tok
        for m in _START_MARKERS:
            text = text.removeprefix(m)
        for m in _END_MARKERS:
            text = text.removesuffix(m)
        if not text:  # a bare marker ("▁") carries no character: it only opens a word
            open_word = False
            continue
        if open_word and not starts:
            words[-1][0] += text
            words[-1][1].append(pos)
        else:
            words.append([text, [pos]])
        open_word = not ends
    return [(text, tuple(p)) for text, p in words]


def _words_from_markers(prompt: str, tokenizer) -> list[Word]:
    """Words from marker-merged token strings, matched to the prompt's words character by character."""
    ids = tokenizer(prompt, truncation=_max_length(tokenizer) is not None, max_length=_max_length(tokenizer))["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    pieces = merge_subword_tokens(tokens, special=set(getattr(tokenizer, "all_special_tokens", [])))
    spans = split_words(prompt)
    words, piece_i = [], 0
    for i, (text, ws, we) in enumerate(spans):
        wanted, got, positions = text.lower(), "", []
        # a prompt word may be several pieces (never the other way round after the marker merge)
        while piece_i < len(pieces) and len(got) < len(wanted):
            got += pieces[piece_i][0].lower()
            positions += pieces[piece_i][1]
            piece_i += 1
        if not positions:
            break  # truncated: the words after this one were cut off
        if got != wanted:
            raise ValueError(f"cannot align tokens {tokens} with the words of prompt {prompt!r}: "
                             f"word {text!r} read back as {got!r}")
        words.append(Word(text, i, tuple(positions), ws, we))
    return words


def prompt_words(prompt: str, tokenizer) -> list[Word]:
    """The prompt's words with the positions of their tokens in `tokenizer(prompt)["input_ids"]`.

    Words cut off by the tokenizer's maximum length are left out.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt={prompt!r} must be a non-empty string")
    words = _words_from_offsets(prompt, tokenizer)
    return words if words is not None else _words_from_markers(prompt, tokenizer)


def find_word(words: list[Word], text: str) -> list[Word]:
    """Every occurrence of `text` among `words` (case-insensitive); KeyError listing the words if none."""
    hits = [w for w in words if w.text.lower() == text.lower()]
    if not hits:
        raise KeyError(f"word={text!r} is not in the prompt; its words are {[w.text for w in words]}")
    return hits


def subject_word(names: list[str], word: str = "") -> str:
    """The word whose map to show: `word` when the prompt has it (case-insensitive); with `word` empty,
    the prompt's first shape word of the shapes world (circle, box, ...), else its first word.
    A word the prompt lacks raises UserInputError listing the prompt's words.

    >>> subject_word(["a", "red", "box", "moves"]), subject_word(["a", "red", "box"], "RED")
    ('box', 'red')
    """
    from ..errors import UserInputError
    from ..world.captions import SHAPE_WORDS
    lowered = {n.lower(): n for n in names}
    if word:
        if word.lower() not in lowered:
            raise UserInputError("word", word, f"is not a word of the prompt; its words are {list(names)}")
        return lowered[word.lower()]
    shapes = {form for forms in SHAPE_WORDS.values() for form in forms}
    if not names:
        raise UserInputError("prompt", "", "has no words to map")
    return next((n for n in names if n.lower() in shapes), names[0])
