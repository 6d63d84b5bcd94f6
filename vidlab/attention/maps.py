"""Per-word heat maps of one prompt, and how much of a word's heat falls inside a box."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .words import Word, find_word


@dataclasses.dataclass
class WordMaps:
    """Heat maps (n_words, F, h, w) of a prompt's words; `maps["circle"]` -> (F, h, w).

    A word that occurs more than once ("a ... on a ...") is the sum of its occurrences;
    `occurrence(text, k)` gives one of them.
    """

    prompt: str
    words: list[Word]
    heat: torch.Tensor  # (n_words, F, h, w): mean attention probability, a word's tokens summed

    @property
    def names(self) -> list[str]:
        """The words, in prompt order (repeats included)."""
        return [w.text for w in self.words]

    @property
    def num_frames(self) -> int:
        return self.heat.shape[1]

    def __getitem__(self, text: str) -> torch.Tensor:
        hits = find_word(self.words, text)
        return sum(self.heat[self.words.index(w)] for w in hits)

    def __contains__(self, text: str) -> bool:
        return any(w.text.lower() == text.lower() for w in self.words)

    def occurrence(self, text: str, k: int = 0) -> torch.Tensor:
        hits = find_word(self.words, text)
        if not -len(hits) <= k < len(hits):
            raise IndexError(f"occurrence k={k} of word {text!r}: the prompt has {len(hits)}")
        return self.heat[self.words.index(hits[k])]

    def table(self):
        """One row per word: its tokens, mean heat, and the (x, y) latent cell of its peak in frame 0."""
        import pandas as pd
        rows = []
        for w, heat in zip(self.words, self.heat):
            y, x = divmod(int(heat[0].argmax()), heat.shape[-1])
            rows.append({"word": w.text, "tokens": list(w.tokens), "mean_heat": float(heat.mean()), "peak_x": x,
                         "peak_y": y})
        return pd.DataFrame(rows)

    def resized(self, text: str, size: tuple[int, int]) -> torch.Tensor:
        """The word's heat (F, H, W) resized bilinearly to an image size (H, W)."""
        return F.interpolate(self[text][:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def box_mass_ratio(heat: torch.Tensor, bbox: tuple[int, int, int, int], image_size: tuple[int, int],
                   dilate: int = 0) -> float:
    """(share of the heat inside a box) / (share of the image the box covers); 1 = no preference.

    heat (h, w) at any resolution is resized to image_size (H, W); bbox (x0, y0, x1, y1) inclusive
    pixel corners, as the analyzer gives them, grown by `dilate` pixels on each side.
    >>> heat = torch.zeros(4, 4); heat[0, 0] = 1.0
    >>> round(box_mass_ratio(heat, (0, 0, 15, 15), (64, 64)), 2) > 1
    True
    """
    if heat.ndim != 2:
        raise ValueError(f"heat must have shape (h, w), got {tuple(heat.shape)}")
    big = F.interpolate(heat[None, None].float(), size=image_size, mode="bilinear", align_corners=False)[0, 0]
    big = big.clamp_min(0)
    total = float(big.sum())
    if total <= 0:
        raise ValueError("heat has no positive mass")
    H, W = image_size
    x0, y0, x1, y1 = bbox
    x0, y0 = max(0, x0 - dilate), max(0, y0 - dilate)
    x1, y1 = min(W - 1, x1 + dilate), min(H - 1, y1 + dilate)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"bbox={bbox} is empty inside an image of size {image_size}")
    inside = float(big[y0:y1 + 1, x0:x1 + 1].sum()) / total
    share = (x1 - x0 + 1) * (y1 - y0 + 1) / (H * W)
    return inside / share
