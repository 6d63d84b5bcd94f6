"""How `native` and `sliding_window` honour a request's fields, or refuse them naming the field.

frame_chain and segment_chain warp and blend pixels; a video model takes prompts and noise.
Each field maps onto one of those:

- `keyframes`: a prompt per frame range. `native` on AnimateDiff gives every frame its prompt
  through diffusers' per-frame prompt path (a prompt dict, switched at the keyframe's frame);
  Wan has no per-frame prompt, so `native` refuses keyframes there (sliding_window and
  segment_chain take them). `sliding_window` gives each window the prompt in effect at its first
  new frame.
- `camera_motion`: a caption. 'pan' adds 'the camera pans right' (the camera moves right, as in
  `image_fields.camera_matrix`), 'zoom' adds 'the camera zooms in'. Refused where the model's
  tokenizer cannot read a word of it (the zoo knows no 'zooms').
- `motion_intensity`: the speed word of the prompt's motion phrase: below 0.75 'slowly', from
  0.75 'quickly' ('moves left' -> 'moves left quickly'). Set to anything but its default 0.5 on a
  prompt that names no motion ('moves <direction>'), or against the speed the prompt names: refused.
- `temporal_consistency` tc: the share of the initial noise every frame has in common, a mixed
  noise prior (Ge et al. 2023, "Preserve Your Own Correlation"): share = 0.3 (tc - 0.7) / 0.3,
  0 at 0.7 (independent noise) to 0.3 at 1.0. sliding_window also maps it onto how much each
  window may change its anchor (the img2img strength of `image_fields.consistency_knobs`).
"""
from __future__ import annotations

import dataclasses
import math
import re

import torch

from ..config import GenerationRequest
from ..errors import UserError
from ..seeds import generator

CAMERA_PHRASES = {"pan": "the camera pans right", "zoom": "the camera zooms in"}
FAST_FROM = 0.75  # motion_intensity from which the speed word is 'quickly'
MAX_SHARED_NOISE = 0.3
_DIRECTION = r"(?:up left|up right|down left|down right|left|right|up|down)"
_MOTION = re.compile(rf"\bmoves {_DIRECTION}(?: (slowly|quickly))?")


class FieldNotSupportedError(UserError, ValueError):
    """A request field the strategy cannot honour on this model: the message names field, value and why."""

    def __init__(self, field: str, value, reason: str):
        self.field, self.value = field, value
        super().__init__(f"{field}={value!r}: {reason}")


def speed_word(motion_intensity: float) -> str:
    """The speed word of the prompt's motion phrase.

    >>> speed_word(0.5), speed_word(1.0)
    ('slowly', 'quickly')
    """
    return "quickly" if motion_intensity >= FAST_FROM else "slowly"


def shared_noise_share(temporal_consistency: float) -> float:
    """The share of the initial noise every frame has in common (see the module docstring).

    >>> shared_noise_share(0.7), shared_noise_share(1.0)
    (0.0, 0.3)
    """
    return round(MAX_SHARED_NOISE * (temporal_consistency - 0.7) / 0.3, 6)


def unreadable_words(backend, text: str) -> list[str]:
    """Words of text that the backend's tokenizer maps to its unknown token (none for BPE tokenizers)."""
    tokenizer = backend.components.get("tokenizer")
    unk = getattr(tokenizer, "unk_token_id", None)
    if tokenizer is None or unk is None:
        return []
    return [w for w in dict.fromkeys(text.split()) if unk in tokenizer(w, add_special_tokens=False).input_ids]


def truncated_words(backend, text: str) -> list[str]:
    """The words of text past the tokenizer's length limit: the model never sees them."""
    tokenizer = backend.components.get("tokenizer")
    limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer is None or not limit or limit > 100_000:
        return []
    encoded = tokenizer(text, truncation=False, return_offsets_mapping=True, verbose=False)
    if len(encoded["input_ids"]) <= limit:
        return []
    # the last kept slot holds the end token: text from the first dropped token's start is cut
    offsets = [o for o in encoded["offset_mapping"] if o[1] > o[0]]
    kept = limit - tokenizer.num_special_tokens_to_add()
    return text[offsets[kept][0]:].split() if kept < len(offsets) else []


class UnseenWordsError(UserError, ValueError):
    """strict=True and a prompt has words the model cannot see."""


def unseen_words(backend, prompts, strict: bool = False) -> dict[str, list[str]]:
    """{'unknown': words the tokenizer maps to unknown, 'truncated': words past its length limit}
    over every prompt; a warning names them, strict=True raises UnseenWordsError instead."""
    import warnings

    unknown, truncated = {}, {}
    for text in dict.fromkeys(p for p in prompts if p):
        unknown.update(dict.fromkeys(unreadable_words(backend, text)))
        truncated.update(dict.fromkeys(truncated_words(backend, text)))
    found = {"unknown": list(unknown), "truncated": list(truncated)}
    if unknown or truncated:
        message = (f"model {backend.preset.name!r} cannot see words of the prompt: "
                   + "; ".join(f"{k}: {v}" for k, v in found.items() if v)
                   + " (unknown: not in its vocabulary; truncated: past its token limit)")
        if strict:
            raise UnseenWordsError(message)
        warnings.warn(message, stacklevel=3)
    return found


def apply_motion_intensity(prompt: str, request: GenerationRequest) -> str:
    """The prompt with its motion phrase's speed word set from motion_intensity (see module doc)."""
    # asked for: anything but the field's default (a sweep's point carries every field, defaults included)
    explicit = request.motion_intensity != GenerationRequest.model_fields["motion_intensity"].default
    wanted = speed_word(request.motion_intensity)
    match = _MOTION.search(prompt)
    if match is None:
        if explicit:
            raise FieldNotSupportedError(
                "motion_intensity", request.motion_intensity,
                f"the prompt {prompt!r} names no motion ('moves <direction>') for the video model to speed up or "
                "slow down; leave motion_intensity unset, or use frame_chain / segment_chain, where it scales the warp")
        return prompt
    said = match.group(1)
    if said is None:
        return prompt[:match.end()] + f" {wanted}" + prompt[match.end():]
    if explicit and said != wanted:
        raise FieldNotSupportedError(
            "motion_intensity", request.motion_intensity,
            f"asks for '{wanted}' (below {FAST_FROM}: 'slowly', from {FAST_FROM}: 'quickly') but the prompt says "
            f"'{said}'; change one of them")
    return prompt


def apply_camera(backend, prompt: str, request: GenerationRequest) -> str:
    """The prompt with the camera phrase of camera_motion appended; refused if the model cannot read it."""
    if request.camera_motion == "static":
        return prompt
    phrase = CAMERA_PHRASES[request.camera_motion]
    unknown = unreadable_words(backend, phrase)
    if unknown:
        raise FieldNotSupportedError(
            "camera_motion", request.camera_motion,
            f"the video model of {backend.preset.name!r} cannot read {unknown} of the caption {phrase!r}, so it "
            "cannot be asked for this camera move; use frame_chain or segment_chain, which warp the frames")
    return f"{prompt} , {phrase}"


def video_prompt(backend, prompt: str, request: GenerationRequest) -> str:
    """One prompt as the video model is given it: speed word and camera phrase applied."""
    return apply_camera(backend, apply_motion_intensity(prompt, request), request)


def keyframe_prompts(backend, request: GenerationRequest) -> dict[int, str]:
    """{first frame: prompt} for the base prompt and every keyframe, each made a video prompt."""
    schedule = request.prompt_schedule()
    out = {0: schedule[0]}
    for i in range(1, len(schedule)):
        if schedule[i] != schedule[i - 1]:
            out[i] = schedule[i]
    return {i: video_prompt(backend, p, request) for i, p in out.items()}


@dataclasses.dataclass(frozen=True)
class NoisePrior:
    """Initial latents with `share` of their variance common to every frame (unit variance kept)."""

    share: float

    def latents(self, pipe, family: str, num_frames: int, height: int, width: int, seed: int) -> torch.Tensor | None:
        """(1, C, T, h, w) for the pipeline's `latents=`; None at share 0 (the pipeline draws its own)."""
        if self.share == 0:
            return None
        if family == "wan":
            channels = pipe.transformer.config.in_channels
            t = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
            scale = pipe.vae_scale_factor_spatial
        else:
            channels, t, scale = pipe.unet.config.in_channels, num_frames, pipe.vae_scale_factor
        shape = (1, channels, t, height // scale, width // scale)
        g = generator(seed, "noise_prior")
        independent = torch.randn(shape, generator=g)
        common = torch.randn((1, channels, 1, *shape[3:]), generator=g)
        latents = math.sqrt(self.share) * common + math.sqrt(1 - self.share) * independent
        # AnimateDiff uses given latents as they come (Wan casts them itself): its UNet's device and dtype
        return latents if family == "wan" else latents.to(pipe.unet.device, pipe.unet.dtype)

    def record(self) -> dict:
        return {"shared_noise_share": self.share}
