"""Shapes-world metrics: prompt adherence and subject consistency, read by `vidlab.world.analyze`.

Because the shapes world's ground truth is known, these are exact counts, not model scores:

- `adherence(frames, prompt)`: per attribute the prompt names (shape, color, background,
  position), the fraction of frames where the analyzer reads what the prompt asks;
- `subject_consistency(frames)`: the fraction of frames that show the same subject (shape, color)
  on the same background as the reference frame.

`consistency_score_1_to_5` puts a consistency fraction on seed 001's 1-5 scale so that our curves
can stand beside the article's table, `SEED001_DECAY_TABLE`.

>>> from vidlab.world import Scene, render_clip
>>> clip = render_clip(Scene("circle", "red", "white", "center", "large"), 4)  # standing still
>>> adherence(clip, "a red circle in the center on a white background")
{'shape': 1.0, 'color': 1.0, 'background': 1.0, 'position': 1.0, 'overall': 1.0}
>>> subject_consistency(clip), consistency_score_1_to_5(1.0)
(1.0, 5.0)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..world.analyzer import FrameAttributes, analyze_frames, matches, motion_direction
from ..world.captions import parse_prompt
from ._checks import check_video

ADHERENCE_KEYS = ("shape", "color", "background", "position")
CONSISTENCY_KEYS = ("shape", "color", "background")

# Seed 001's table: subject consistency on a 1-5 scale against the number of chained segments.
# The last row is an upper bound ("8+ segments below 3.0"): relation "<".
SEED001_DECAY_TABLE: tuple[dict, ...] = (
    {"segments": "2", "min_segments": 2, "score": 4.8, "relation": "="},
    {"segments": "4", "min_segments": 4, "score": 4.3, "relation": "="},
    {"segments": "6", "min_segments": 6, "score": 3.7, "relation": "="},
    {"segments": "8+", "min_segments": 8, "score": 3.0, "relation": "<"},
)


def adherence_from_attributes(attributes: Sequence[FrameAttributes], prompt: str) -> dict[str, float]:
    wanted = parse_prompt(prompt)
    named = [k for k in ADHERENCE_KEYS if wanted.get(k) is not None]
    if not named:
        raise ValueError(f"prompt={prompt!r} names none of {list(ADHERENCE_KEYS)}: no shapes-world attribute "
                         f"to check adherence against")
    hits = [matches(a, wanted, keys=tuple(named)) for a in attributes]
    scores = {k: sum(h[k] for h in hits) / len(hits) for k in named}
    scores["overall"] = sum(scores.values()) / len(named)
    return scores


def motion_adherence_from_attributes(attributes: Sequence[FrameAttributes], prompt: str) -> float | None:
    """1.0 when the subject moves from the first frame to the last (>= 2 px) in the direction the
    prompt names ('moves up left'), nearest of the 8; 0.0 otherwise; None when it names no motion."""
    wanted = parse_prompt(prompt)["direction"]
    if wanted is None:
        return None
    return float(motion_direction(attributes) == wanted)


def adherence(frames: torch.Tensor, prompt: str) -> dict[str, float]:
    """Fraction of frames showing each attribute the prompt asks for, and their mean ("overall").

    Attributes the prompt does not name are left out; a prompt that names none is an error.
    Keys, in this order where present: shape, color, background, position, overall.
    """
    check_video(frames)
    return adherence_from_attributes(analyze_frames(frames), prompt)


def matches_reference(attributes: Sequence[FrameAttributes], reference: int) -> torch.Tensor:
    ref = attributes[reference]
    wanted = [getattr(ref, k) for k in CONSISTENCY_KEYS]

    def same(a: FrameAttributes) -> bool:
        got = [getattr(a, k) for k in CONSISTENCY_KEYS]
        return a.has_subject and None not in got and got == wanted

    return torch.tensor([same(a) for a in attributes], dtype=torch.bool)


def _check_reference(reference, num_frames: int) -> int:
    if isinstance(reference, bool) or not isinstance(reference, int) or not -num_frames <= reference < num_frames:
        raise ValueError(f"reference={reference!r} is not a frame index in [{-num_frames}, {num_frames - 1}]")
    return reference % num_frames


def subject_matches(frames: torch.Tensor, reference: int = 0) -> torch.Tensor:
    """Boolean (F,): does frame t show the reference frame's shape, colour and background?

    A frame with no subject, or with an attribute the analyzer cannot name, does not match; if the
    reference frame itself has none, no frame matches.
    """
    check_video(frames)
    reference = _check_reference(reference, frames.shape[0])
    return matches_reference(analyze_frames(frames), reference)


def consistency_from_matches(matched: torch.Tensor, reference: int) -> float:
    others = torch.cat([matched[:reference], matched[reference + 1:]])
    return float(others.double().mean())


def subject_consistency(frames: torch.Tensor, reference: int = 0) -> float:
    """Fraction of the other frames whose (shape, color, background) equal the reference frame's (frame 0).

    Frames with no subject count as inconsistent. Needs at least 2 frames.
    """
    check_video(frames, min_frames=2)
    reference = _check_reference(reference, frames.shape[0])
    return consistency_from_matches(matches_reference(analyze_frames(frames), reference), reference)


def consistency_score_1_to_5(x):
    """Map a consistency fraction in [0, 1] onto seed 001's 1-5 scale: score = 1 + 4 x.

    Linear, so 0 (no frame consistent) is 1 and 1 (every frame) is 5; the article's 4.8 / 4.3 / 3.7
    / <3.0 correspond to fractions 0.95 / 0.825 / 0.675 / <0.5. The article's scale is a human
    rating, so the mapping places our numbers beside it, it does not make them the same measurement.
    Accepts a float, a numpy array or a tensor; NaN passes through.

    >>> consistency_score_1_to_5(0.825)
    4.3
    """
    values = torch.as_tensor(x, dtype=torch.float64)
    finite = values[~values.isnan()]
    if finite.numel() and (finite.min() < 0 or finite.max() > 1):
        raise ValueError(f"Expected a consistency fraction in [0, 1], got {x!r}")
    if isinstance(x, torch.Tensor):
        return 1 + 4 * x
    if isinstance(x, (float, int)):
        return 1 + 4 * float(x) if not math.isnan(x) else math.nan
    return 1 + 4 * values.numpy()
