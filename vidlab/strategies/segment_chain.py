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

from ..config import GenerationRequest, Strict, check_seed_batch
from ..seeds import generator, sub_seed
from .events import Progress
from .image_fields import (camera_matrix, consistency_knobs, crossfade, flow_interpolate, match_lab_histogram, warp)
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


FLOW_TRANSITION_FRAMES = 2  # frames a 'flow' transition puts between two segments


def transition_frames(opts: SegmentChainOptions) -> int:
    """Frames one transition puts between two segments: none 0, crossfade one per weight pair, flow 2."""
    return {"none": 0, "crossfade": len(opts.crossfade_weights), "flow": FLOW_TRANSITION_FRAMES}[opts.transition]


def frames_for(num_segments: int, frames_per_segment: int, options: dict | SegmentChainOptions | None = None) -> int:
    """The clip length that gives `num_segments` segments of `frames_per_segment` frames each with these
    options' transitions between them (what a request's duration x fps must come to).

    >>> frames_for(3, 4), frames_for(3, 4, {"transition": "crossfade"}), frames_for(3, 4, {"transition": "crossfade",
    ...     "crossfade_weights": [[0.5, 0.5]]})
    (12, 16, 14)
    """
    opts = options if isinstance(options, SegmentChainOptions) else SegmentChainOptions.model_validate(options or {})
    return num_segments * frames_per_segment + transition_frames(opts) * (num_segments - 1)


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
    """Frames (F, 3, H, W) and a record; see the module docstring."""
    ((frames, record),) = segment_chain_batch(backend, [request], options, callback)
    return frames, record


def segment_chain_batch(backend, requests: list[GenerationRequest], options: dict, callback=None):
    """One (frames, record) per request, the requests differing only in their seed: segment k of
    every seed made together (an image model: each denoising call takes every seed's frame j; a
    video model: one call for every seed's clip), each video bit-identical to `segment_chain` on
    its request alone. A seed whose segment is rejected is redone with its next attempt's seed,
    beside the other rejected seeds, as it would be alone."""
    opts = SegmentChainOptions.model_validate(options)
    check_seed_batch(requests)
    request = requests[0]
    knobs = consistency_knobs(request.temporal_consistency)
    strength = knobs["strength"] if opts.strength is None else opts.strength
    strength = min(1.0, strength * (0.75 + 0.25 * request.motion_intensity))
    coherence = knobs["color_coherence"] if opts.color_coherence is None else opts.color_coherence
    prompts = segment_prompts(request, opts)
    prompts = [p if k == 0 or not opts.consistency_suffix else f"{p} , {opts.consistency_suffix}"
               for k, p in enumerate(prompts)]
    n_trans = transition_frames(opts)
    from_keyframes = bool(request.keyframes) and opts.num_segments is None and opts.segment_prompts is None
    lengths = (keyframe_lengths(request, n_trans) if from_keyframes
               else segment_lengths(request.num_frames, len(prompts), n_trans))
    matrix = camera_matrix(request.camera_motion, request.motion_intensity, request.width, request.height)
    make_segments = _image_segments if backend.preset.family == "sd" else _video_segments
    ctx = dict(backend=backend, request=request, opts=opts, matrix=matrix, encode=PromptCache(backend),
               strength=strength, make_segments=make_segments, coherence=coherence)

    videos: list[list[torch.Tensor]] = [[] for _ in requests]
    records: list[list[dict]] = [[] for _ in requests]
    starts: list[list[int]] = [[] for _ in requests]
    progress = Progress("segment_chain", "segment", len(prompts), callback)
    for k in tqdm(range(len(prompts)), desc="segment_chain", disable=len(prompts) < 3, leave=False):
        made = _segments_with_retries(ctx, k, prompts[k], lengths[k], [r.seed for r in requests], videos, progress)
        for frames, own_starts, own_records, (seg, attempts) in zip(videos, starts, records, made):
            if frames and n_trans:
                between = crossfade(frames[-1], seg[0], opts.crossfade_weights) if opts.transition == "crossfade" \
                    else flow_interpolate(frames[-1], seg[0])
                frames.extend(between)
            own_starts.append(len(frames))
            frames.extend(seg)
            own_records.append({"prompt": prompts[k], "frames": lengths[k], "seed": attempts[-1],
                                "attempt_seeds": attempts, "start_frame": own_starts[-1]})
    anchor_strength = None if backend.preset.family == "wan" else strength  # Wan's i2v has no strength
    return [(torch.stack(frames), {"segments": own_records, "segment_starts": own_starts,
                                   "anchor_strength": anchor_strength, "color_coherence": coherence,
                                   "transition": opts.transition, "transition_frames": n_trans,
                                   "camera_matrix": matrix.tolist(), "base_noise_seed": sub_seed(r.seed, "base")})
            for r, frames, own_starts, own_records in zip(requests, videos, starts, records)]


def _segments_with_retries(ctx, k: int, prompt: str, length: int, seeds: list[int], videos: list, progress):
    """Segment k of every seed -> [(segment (L, 3, H, W), attempt seeds), ...], one per seed.

    Every attempt makes the segments of the seeds still open together; a seed's segment that
    fails (the model call raises RuntimeError, or the callback raises RetrySegment on it) is
    redone with its next attempt's seed. If a shared call fails, each of its seeds is tried
    alone at that attempt, so one seed's failure never spends another's attempt."""
    opts, coherence = ctx["opts"], ctx["coherence"]
    attempts: list[list[int]] = [[] for _ in seeds]
    done: dict[int, torch.Tensor] = {}
    errors: dict[int, Exception] = {}
    for attempt in range(opts.max_retries + 1):
        open_ = [b for b in range(len(seeds)) if b not in done]
        if not open_:
            break
        seg_seeds = {b: sub_seed(seeds[b], "segment", k, attempt) for b in open_}
        for b in open_:
            attempts[b].append(seg_seeds[b])
        for b, seg in _made_together(ctx, prompt, length, open_, seg_seeds, seeds, videos):
            if isinstance(seg, RuntimeError):  # its model call failed: the next attempt
                errors[b] = seg
                continue
            try:
                if videos[b]:
                    seg = torch.stack([match_lab_histogram(f, videos[b][0], coherence) for f in seg])
                progress.done(k, seg, attempt)
                done[b] = seg
            except (RetrySegment, RuntimeError) as err:  # rejected, or the callback failed: the next attempt
                errors[b] = err
    failed = [b for b in range(len(seeds)) if b not in done]
    if failed:
        b = failed[0]
        raise RuntimeError(f"segment {k} failed after {opts.max_retries + 1} attempts (seeds {attempts[b]}): "
                           f"{errors[b]}") from errors[b]
    return [(done[b], attempts[b]) for b in range(len(seeds))]


def _made_together(ctx, prompt: str, length: int, open_: list[int], seg_seeds: dict, seeds: list[int],
                   videos: list) -> list[tuple[int, torch.Tensor | RuntimeError]]:
    """(seed index, its segment, or the RuntimeError its call raised) for every seed of `open_` at one
    attempt: one call for all; if that raises (e.g. out of memory), each seed alone."""
    def make(group):
        anchors = [videos[b][-1] for b in group] if videos[group[0]] else None
        return list(zip(group, ctx["make_segments"](ctx, prompt, length, [seg_seeds[b] for b in group],
                                                    [seeds[b] for b in group], anchors)))
    try:
        return make(open_)
    except RuntimeError as err:
        if len(open_) == 1:  # alone already: the same call again would fail the same way
            return [(open_[0], err)]
    made = []
    for b in open_:
        try:
            made += make([b])
        except RuntimeError as err:
            made.append((b, err))
    return made


def _style_noise(backend, base_seed: int, shape, seg_seed: int, p: float) -> torch.Tensor:
    """Style lock: the base noise of the request's seed, perturbed by a little of the segment's own."""
    dtype = backend.components["unet"].dtype if "unet" in backend.components else torch.float32
    base = make_noise(sub_seed(base_seed, "base"), shape, backend.device, dtype)
    own = make_noise(seg_seed, shape, backend.device, dtype)
    return math.sqrt(1 - p * p) * base + p * own


def _image_segments(ctx, prompt: str, length: int, seg_seeds: list[int], seeds: list[int], anchors):
    """An image model's segments, one per seed: frame 0 from text or the seed's anchor, then img2img
    frame to frame; each denoising call takes every seed's frame j (`sd_loop.denoise`, batch-invariant)."""
    backend, request, opts = ctx["backend"], ctx["request"], ctx["opts"]
    cond, uncond = ctx["encode"](prompt, request.negative_prompt)
    shape = latent_shape(backend, request.height, request.width)
    common = dict(num_inference_steps=request.num_inference_steps, guidance_scale=request.guidance_scale)
    out = []  # one (B, 3, H, W) a frame
    for j in range(length):
        noise = torch.cat([_style_noise(backend, seed, shape, sub_seed(s, "segment_frame", j), opts.style_perturbation)
                           for seed, s in zip(seeds, seg_seeds)])                  # (B, C, h, w)
        step_generator = [generator(s, "scheduler", j) for s in seg_seeds]
        prev = out[-1] if out else anchors
        if prev is None:
            frame = denoise(backend, cond, uncond, noise, generator=step_generator, **common)
        else:
            init = encode_image(backend, torch.stack([warp(p, ctx["matrix"]) for p in prev]))
            s = ctx["strength"] if not out else opts.within_strength
            frame = denoise(backend, cond, uncond, noise, init_latents=init, strength=s,
                            generator=step_generator, **common)
        out.append(frame)
    return list(torch.stack(out, dim=1))                                             # B x (L, 3, H, W)


def _video_segments(ctx, prompt: str, length: int, seg_seeds: list[int], seeds: list[int], anchors):
    """A video model's segments, one per seed: one call for all, each seed's warped anchor its image condition."""
    from .native import generate_clips

    images = [warp(a, ctx["matrix"]) for a in anchors] if anchors is not None else None
    # generate_clips returns exactly `length` frames (for Wan it asks for the next 4k + 1 and trims)
    clips = generate_clips(ctx["backend"], ctx["request"], prompt, length, seg_seeds, images=images,
                           strength=ctx["strength"])
    if clips[0].shape[0] != length:
        raise ValueError(f"the video model made {clips[0].shape[0]} frames for a segment of {length}")
    return clips
