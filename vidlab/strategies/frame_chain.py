"""frame_chain (seed 002): frame 0 from text, every next frame from ControlNet on the previous one.

Per frame i >= 1:
1. the previous frame is warped by the camera motion (Deforum style);
2. its control map (canny by default) conditions the ControlNet;
3. mode 'controlnet': fresh noise with seed `sub_seed(seed, 'frame', i)` (seed 002 used 42 + i, see vidlab.seeds) (text-to-image with control);
   mode 'controlnet_img2img': the warped previous frame is also the img2img init, with `strength`;
4. colour coherence matches the frame's LAB histogram to frame 0's (weight from temporal_consistency).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from ..config import GenerationRequest, Strict, check_seed_batch
from ..seeds import generator, sub_seed
from .events import Progress
from .image_fields import CONTROL_EXTRACTORS, camera_matrix, consistency_knobs, match_lab_histogram, warp
from .sd_loop import PromptCache, denoise, encode_image, latent_shape, make_noise


class FrameChainOptions(Strict):
    mode: Literal["controlnet", "controlnet_img2img"] = "controlnet"
    control_type: str = Field("canny", description="a key of image_fields.CONTROL_EXTRACTORS")
    controlnet_conditioning_scale: float | None = Field(None, ge=0.0, le=3.0,
                                                        description="None: from temporal_consistency")
    strength: float | None = Field(None, gt=0.0, le=1.0, description="img2img strength; None: from temporal_consistency")
    color_coherence: float | None = Field(None, ge=0.0, le=1.0, description="None: from temporal_consistency")
    prompts: tuple[str, ...] | None = Field(None, description="per-frame prompts; None: the request's schedule")


def frame_chain(backend, request: GenerationRequest, options: dict, callback=None):
    """Frames (F, 3, H, W) and a record; see the module docstring."""
    ((frames, record),) = frame_chain_batch(backend, [request], options, callback)
    return frames, record


def frame_chain_batch(backend, requests: list[GenerationRequest], options: dict, callback=None):
    """One (frames, record) per request, the requests differing only in their seed, made together:
    each denoising call takes every seed's frame i as one batch. Each video is bit-identical to
    `frame_chain` on its request alone (every draw comes from its own seed's generators, and the
    batched modules compute each sample as they do alone; tests/test_batching.py checks it)."""
    opts = FrameChainOptions.model_validate(options)
    check_seed_batch(requests)
    request = requests[0]
    if opts.control_type not in CONTROL_EXTRACTORS:
        raise ValueError(f"control_type={opts.control_type!r} is not one of {sorted(CONTROL_EXTRACTORS)}")
    if "controlnet" not in backend.components:
        raise ValueError(f"model {backend.preset.name!r} has no ControlNet; frame_chain needs one "
                         "(load it with controlnet=PATH or use a preset that has one)")
    knobs = consistency_knobs(request.temporal_consistency)
    scale = knobs["controlnet_conditioning_scale"] if opts.controlnet_conditioning_scale is None \
        else opts.controlnet_conditioning_scale
    strength = knobs["strength"] if opts.strength is None else opts.strength
    coherence = knobs["color_coherence"] if opts.color_coherence is None else opts.color_coherence
    # motion_intensity also scales the per-frame change of the img2img mode
    strength = min(1.0, strength * (0.75 + 0.25 * request.motion_intensity))
    n = request.num_frames
    prompts = list(opts.prompts) if opts.prompts is not None else request.prompt_schedule()
    if len(prompts) != n:
        raise ValueError(f"options.prompts has {len(prompts)} prompts; the request has {n} frames")
    extract = CONTROL_EXTRACTORS[opts.control_type]
    encode = PromptCache(backend)
    shape = latent_shape(backend, request.height, request.width)
    matrix = camera_matrix(request.camera_motion, request.motion_intensity, request.width, request.height)
    common = dict(num_inference_steps=request.num_inference_steps, guidance_scale=request.guidance_scale)

    videos, seeds = [], [[] for _ in requests]  # videos: one (B, 3, H, W) tensor a frame
    progress = Progress("frame_chain", "frame", n, callback)
    for i in tqdm(range(n), desc="frame_chain", disable=n < 4, leave=False):
        for r, s in zip(requests, seeds):
            s.append(sub_seed(r.seed, "frame", i))
        cond, uncond = encode(prompts[i], request.negative_prompt)
        noise = torch.cat([make_noise(s[i], shape, backend.device, backend.components["unet"].dtype)
                           for s in seeds])                                   # (B, C, h, w)
        step_generator = [generator(r.seed, "scheduler", i) for r in requests]
        if i == 0:  # 1. frame 0 from text
            frame = denoise(backend, cond, uncond, noise, generator=step_generator, **common)
        else:
            anchor = torch.stack([warp(f, matrix) for f in videos[-1]])      # 2. camera motion (B, 3, H, W)
            control = torch.stack([extract(a) for a in anchor])              # 3. control maps (B, 3, H, W)
            init = encode_image(backend, anchor) if opts.mode == "controlnet_img2img" else None
            frame = denoise(backend, cond, uncond, noise, control=control, control_scale=scale,
                            init_latents=init, strength=strength if init is not None else 1.0,
                            generator=step_generator, **common)
            frame = torch.stack([match_lab_histogram(f, f0, coherence)       # 4. colour coherence
                                 for f, f0 in zip(frame, videos[0])])
        videos.append(frame)
        progress.done(i, frame)
    frames = torch.stack(videos, dim=1)                                       # (B, F, 3, H, W)
    return [(frames[b], {"per_frame_seeds": seeds[b], "per_frame_prompts": prompts,
                         "controlnet_conditioning_scale": scale,
                         "strength": strength if opts.mode == "controlnet_img2img" else None,
                         "color_coherence": coherence, "camera_matrix": matrix.tolist()})
            for b in range(len(requests))]
