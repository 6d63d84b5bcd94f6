"""segment_chain (seed 001): a long video as segments, context carried by hand.

1. the description is split into per-segment prompts (given, from keyframes, or the base
   prompt repeated), each after the first augmented with a consistency suffix;
2. style lock: every segment's noise is a fixed base noise plus a small perturbation,
   noise_k = sqrt(1 - p^2) * N(base) + p * N(seed_k), p = `style_perturbation`, every seed a
   sub-seed of the request's (`vidlab.seeds`: base, segment k, frame j of a segment);
3. visual anchor: the last frame of segment k (camera-warped) starts segment k + 1 — img2img
   with `strength` for image models, video-to-video with `strength` for AnimateDiff, the image
   condition of image-to-video for Wan (which has no strength: the anchor is the first frame);
4. within a segment an image model chains img2img from frame to frame (`within_strength`);
   a video model makes the segment in one call (Wan makes 4k + 1 frames: it is asked for the
   next such count and the segment keeps its first frames);
5. transitions between segments: 'none', 'crossfade' (blends with `crossfade_weights`),
   'flow' (Farneback optical-flow in-betweens);
6. a segment that fails (raises, or the callback raises RetrySegment) is redone alone with a new
   perturbation seed, up to `max_retries` times; every attempt's seed is recorded.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from ..config import GenerationRequest, Strict
from ..seeds import generator, sub_seed
from .events import Progress
from .effects import (camera_matrix, consistency_knobs, crossfade, flow_interpolate, match_lab_histogram, warp)
from .sd_loop import PromptCache, denoise, encode_image, latent_shape, make_noise


class RetrySegment(Exception):
    """Raised by a callback to reject a segment; the strategy regenerates it with a new seed."""


class SegmentChainOptions(Strict):
    num_segments: int | None = Field(None, ge=1, le=64, description="None: one per keyframe (or 1)")
    segment_prompts: tuple[str, ...] | None = None
    consistency_suffix: str = Field("same subject , same lighting", description="'' turns augmentation off")
    style_perturbation: float = Field(0.1, ge=0.0, le=1.0)
    strength: float | None = Field(None, gt=0.0, le=1.0, description="anchor img2img strength; None: from tc")
    within_strength: float = Field(0.3, gt=0.0, le=1.0, description="img2img strength frame to frame")
    color_coherence: float | None = Field(None, ge=0.0, le=1.0)
    transition: Literal["none", "crossfade", "flow"] = "none"
    crossfade_weights: tuple[tuple[float, float], ...] = ((0.7, 0.3), (0.4, 0.6))
    max_retries: int = Field(2, ge=0, le=10)


def segment_prompts(request: GenerationRequest, opts: SegmentChainOptions) -> list[str]:
    """Per-segment prompts: explicit, else one segment per keyframe span, else the base prompt."""
    if opts.segment_prompts is not None:
        prompts = list(opts.segment_prompts)
        if opts.num_segments is not None and opts.num_segments != len(prompts):
            raise ValueError(f"num_segments={opts.num_segments} but segment_prompts has {len(prompts)} prompts")
        return prompts
    if request.keyframes and opts.num_segments is None:
        spans = [request.full_prompt()] if request.keyframes[0].time > 0 else []
        return spans + [k.prompt for k in request.keyframes]
    return [request.full_prompt()] * (opts.num_segments or 1)


def segment_lengths(total: int, segments: int, transition_frames: int) -> list[int]:
    """Frames per segment so that segments + transitions add up to `total`."""
    body = total - transition_frames * (segments - 1)
    if body < segments:
        raise ValueError(f"{total} frames cannot hold {segments} segments with {transition_frames} transition "
                         f"frames per seam; raise duration x fps or lower num_segments")
    base, extra = divmod(body, segments)
    return [base + (k < extra) for k in range(segments)]


def keyframe_lengths(request: GenerationRequest, transition_frames: int) -> list[int]:
    """Frames per segment when segments come from keyframes: each keyframe's segment starts at the
    first frame its time covers (frame i shows time i / fps), transitions eat into the segment before.
    """
    n = request.num_frames
    starts = [0] if request.keyframes[0].time > 0 else []
    for i, k in enumerate(request.keyframes):
        frame = next((f for f in range(n) if k.time <= f / request.fps), n)
        if frame >= n or (starts and frame <= starts[-1]):
            raise ValueError(f"keyframes[{i}].time={k.time} falls on frame {frame} of {n} at fps={request.fps}, "
                             "not after the previous segment's start; space the keyframes at least one frame apart")
        starts.append(frame)
    spans = [b - a for a, b in zip(starts, starts[1:] + [n])]
    lengths = [span - transition_frames for span in spans[:-1]] + spans[-1:]
    if min(lengths) < 1:
        raise ValueError(f"keyframe segments of {spans} frames cannot hold {transition_frames} transition frames "
                         "per seam; space the keyframes further apart or use transition='none'")
    return lengths


def segment_chain(backend, request: GenerationRequest, options: dict, callback=None):
    opts = SegmentChainOptions.model_validate(options)
    knobs = consistency_knobs(request.temporal_consistency)
    strength = knobs["strength"] if opts.strength is None else opts.strength
    strength = min(1.0, strength * (0.75 + 0.25 * request.motion_intensity))
    coherence = knobs["color_coherence"] if opts.color_coherence is None else opts.color_coherence
    prompts = segment_prompts(request, opts)
    prompts = [p if k == 0 or not opts.consistency_suffix else f"{p} , {opts.consistency_suffix}"
               for k, p in enumerate(prompts)]
    n_trans = {"none": 0, "crossfade": len(opts.crossfade_weights), "flow": 2}[opts.transition]
    from_keyframes = bool(request.keyframes) and opts.num_segments is None and opts.segment_prompts is None
    lengths = (keyframe_lengths(request, n_trans) if from_keyframes
               else segment_lengths(request.num_frames, len(prompts), n_trans))
    matrix = camera_matrix(request.camera_motion, request.motion_intensity, request.width, request.height)
    make_segment = _image_segment if backend.preset.family == "sd" else _video_segment
    ctx = dict(backend=backend, request=request, opts=opts, matrix=matrix, encode=PromptCache(backend),
               strength=strength)

    frames: list[torch.Tensor] = []
    progress = Progress("segment_chain", "segment", len(prompts), callback)
    segments_record, starts = [], []
    for k in tqdm(range(len(prompts)), desc="segment_chain", disable=len(prompts) < 3, leave=False):
        anchor = frames[-1] if frames else None
        attempts = []
        for attempt in range(opts.max_retries + 1):
            seg_seed = sub_seed(request.seed, "segment", k, attempt)
            attempts.append(seg_seed)
            try:
                seg = make_segment(ctx, prompts[k], lengths[k], seg_seed, anchor)
                if frames:
                    seg = torch.stack([match_lab_histogram(f, frames[0], coherence) for f in seg])
                progress.done(k, seg, attempt)
                break
            except RetrySegment as err:
                error = err
            except RuntimeError as err:  # a failed model call (e.g. out of memory): retry this segment alone
                error = err
        else:
            raise RuntimeError(f"segment {k} failed after {opts.max_retries + 1} attempts (seeds {attempts}): "
                               f"{error}") from error
        if frames and n_trans:
            between = crossfade(frames[-1], seg[0], opts.crossfade_weights) if opts.transition == "crossfade" \
                else flow_interpolate(frames[-1], seg[0])
            frames.extend(between)
        starts.append(len(frames))
        frames.extend(seg)
        segments_record.append({"prompt": prompts[k], "frames": lengths[k], "seed": attempts[-1],
                                "attempt_seeds": attempts, "start_frame": starts[-1]})
    anchor_strength = None if backend.preset.family == "wan" else strength  # Wan's i2v has no strength
    record = {"segments": segments_record, "segment_starts": starts, "anchor_strength": anchor_strength,
              "color_coherence": coherence, "transition": opts.transition, "transition_frames": n_trans,
              "camera_matrix": matrix.tolist(), "base_noise_seed": sub_seed(request.seed, "base")}
    return torch.stack(frames), record


def _style_noise(backend, request, shape, seg_seed: int, p: float) -> torch.Tensor:
    """Style lock: the base noise of the request's seed, perturbed by a little of the segment's own."""
    dtype = backend.components["unet"].dtype if "unet" in backend.components else torch.float32
    base = make_noise(sub_seed(request.seed, "base"), shape, backend.device, dtype)
    own = make_noise(seg_seed, shape, backend.device, dtype)
    return math.sqrt(1 - p * p) * base + p * own


def _image_segment(ctx, prompt: str, length: int, seg_seed: int, anchor):
    """An image model's segment: frame 0 from text or the anchor, then img2img frame to frame."""
    backend, request, opts = ctx["backend"], ctx["request"], ctx["opts"]
    cond, uncond = ctx["encode"](prompt, request.negative_prompt)
    shape = latent_shape(backend, request.height, request.width)
    common = dict(num_inference_steps=request.num_inference_steps, guidance_scale=request.guidance_scale)
    out = []
    for j in range(length):
        noise = _style_noise(backend, request, shape, sub_seed(seg_seed, "segment_frame", j), opts.style_perturbation)
        prev = out[-1] if out else anchor
        if prev is None:
            frame = denoise(backend, cond, uncond, noise, generator=generator(seg_seed, "scheduler", j), **common)[0]
        else:
            init = encode_image(backend, warp(prev, ctx["matrix"])[None])
            s = ctx["strength"] if not out else opts.within_strength
            frame = denoise(backend, cond, uncond, noise, init_latents=init, strength=s,
                            generator=generator(seg_seed, "scheduler", j), **common)[0]
        out.append(frame)
    return torch.stack(out)


def _video_segment(ctx, prompt: str, length: int, seg_seed: int, anchor):
    """A video model's segment: one call, the warped anchor as the image condition."""
    from .native import generate_clip

    image = warp(anchor, ctx["matrix"]) if anchor is not None else None
    # generate_clip returns exactly `length` frames (for Wan it asks for the next 4k + 1 and trims)
    clip = generate_clip(ctx["backend"], ctx["request"], prompt, length, seg_seed, image=image,
                         strength=ctx["strength"])
    if clip.shape[0] != length:
        raise ValueError(f"the video model made {clip.shape[0]} frames for a segment of {length}")
    return clip
