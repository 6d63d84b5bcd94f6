"""native and sliding_window: a video model makes the clip; long videos by overlapping windows.

`native`: one pipeline call (AnimateDiff or Wan) makes `num_frames` frames.
`sliding_window`: windows of the model's native length overlapping by `overlap` frames; each
window after the first starts from the previous window's tail (video-to-video for AnimateDiff,
image-to-video for Wan), and overlapping frames are blended linearly. For AnimateDiff,
`free_noise=True` uses diffusers' FreeNoise (shared-noise long video) in one call instead.
"""
from __future__ import annotations

import math

import torch
from pydantic import Field
from tqdm.auto import tqdm

from ..config import GenerationRequest, Strict
from ..seeds import sub_seed
from .effects import consistency_knobs
from .events import Progress
from .video_fields import FieldNotSupportedError, NoisePrior, keyframe_prompts, shared_noise_share


def frames_from_output(output) -> torch.Tensor:
    """A pipeline's `output_type='pt'` frames -> (F, 3, H, W) float in [0, 1] on the CPU."""
    frames = output.frames
    if isinstance(frames, (list, tuple)):
        frames = frames[0]
    frames = torch.as_tensor(frames)
    if frames.ndim == 5:
        frames = frames[0]
    if frames.shape[-1] == 3 and frames.shape[1] != 3:  # (F, H, W, 3)
        frames = frames.permute(0, 3, 1, 2)
    return frames.float().clamp(0, 1).cpu()


def generate_clip(backend, request: GenerationRequest, prompt: str | dict[int, str], num_frames: int, seed: int,
                  image: torch.Tensor | None = None, strength: float = 0.6, free_noise: bool = False,
                  context_length: int | None = None, context_stride: int = 4,
                  noise: NoisePrior = NoisePrior(0.0)) -> torch.Tensor:
    """One call of the backend's video pipeline -> (num_frames, 3, H, W).

    prompt: one prompt, or {first frame: prompt} (AnimateDiff only: per-frame prompts).
    image (3, H, W): the anchor. Wan uses it as the image condition; AnimateDiff uses it
    repeated as the init video of video-to-video with `strength`.
    noise: the initial noise's share common to all frames (text-to-video calls only; an
    anchored call starts from its anchor).
    """
    family = "wan" if backend.video_design == "joint" else "animatediff"
    if not backend.has_video_model:
        raise ValueError(f"model {backend.preset.name!r} has no video model (Wan, motion adapter or video UNet): "
                         "native video needs one (preset 'animatediff', 'wan2.2-ti2v-5b' or 'shapes-tiny')")
    if isinstance(prompt, dict) and (family == "wan" or image is not None):
        raise FieldNotSupportedError("keyframes", prompt, "per-frame prompts need AnimateDiff text-to-video; "
                                     "use sliding_window or segment_chain for keyframes on this model")
    generator = torch.Generator("cpu").manual_seed(int(seed))
    common = dict(prompt=prompt, negative_prompt=request.negative_prompt or None, height=request.height,
                  width=request.width, num_inference_steps=request.num_inference_steps,
                  guidance_scale=request.guidance_scale, generator=generator, output_type="pt")
    if family == "wan":
        return _wan_clip(backend, common, num_frames, seed, image, noise)
    if image is not None:
        if int(request.num_inference_steps * strength) < 1:  # diffusers would run no step and fail on an empty video
            raise ValueError(f"num_inference_steps={request.num_inference_steps} x strength={strength:.4g} leaves no "
                             "denoising step for an anchored clip; raise num_inference_steps or the strength")
        pipe = backend.pipeline("animatediff_v2v")
        video = [image.clamp(0, 1)] * num_frames
        return frames_from_output(pipe(video=torch.stack(video)[None], strength=strength, **common))
    pipe = backend.pipeline("animatediff")
    per_frame = isinstance(prompt, dict)
    if per_frame:
        # diffusers reads a prompt dict through FreeNoise's per-frame path; a context as long as the
        # clip means one window and no noise shuffling. Each prompt also at the frame before the next
        # keyframe, so the interpolation between keyframes is a switch, not a ramp.
        keys = sorted(prompt)
        common["prompt"] = {**prompt, **{nxt - 1: prompt[cur] for cur, nxt in zip(keys, keys[1:]) if nxt - 1 > cur}}
    if free_noise or per_frame:
        pipe.enable_free_noise(context_length=context_length or (num_frames if per_frame and not free_noise
                                                                 else backend.preset.native_frames),
                               context_stride=context_stride)
    latents = None if free_noise else noise.latents(pipe, family, num_frames, request.height, request.width, seed)
    try:
        return frames_from_output(pipe(num_frames=num_frames, latents=latents, **common))
    finally:
        if free_noise or per_frame:
            pipe.disable_free_noise()


def wan_frames_to_ask(pipe, num_frames: int) -> int:
    """The `num_frames` to give WanPipeline so that it makes at least num_frames frames, no more than needed.

    Wan makes k*n + 1 frames (its VAE compresses time k = 4x) and rounds any other count to
    count // k * k + 1. With no temporal compression (k = 1, the zoo's VAE) that rounding always
    adds one frame: ask for one fewer.
    """
    k = pipe.vae_scale_factor_temporal
    if k == 1:
        return max(1, num_frames - 1)
    return frames_made(pipe, num_frames)


def frames_made(pipe, num_frames: int) -> int:
    """How many frames WanPipeline makes when vidlab asks it for num_frames: the next k*n + 1."""
    k = pipe.vae_scale_factor_temporal
    return k * math.ceil((num_frames - 1) / k) + 1


def text_length(pipe) -> int:
    """max_sequence_length for a Wan pipeline: its tokenizer's own limit where that is below Wan's 512."""
    limit = getattr(pipe.tokenizer, "model_max_length", 512) or 512
    return int(min(512, limit))


def _wan_clip(backend, common: dict, num_frames: int, seed: int, image, noise: NoisePrior) -> torch.Tensor:
    """A Wan clip: text-to-video, or anchored on `image` as its first frame.

    A Wan model with an image-to-video pipeline (Wan2.2) takes the anchor as its image
    condition. The zoo's joint model is text-to-video only: its first frame is held to the anchor
    by replacement, the anchor's latent noised to each step's level after every step.
    """
    pipe = backend.pipeline("wan")
    common = dict(common, num_frames=wan_frames_to_ask(pipe, num_frames), max_sequence_length=text_length(pipe))
    if image is None:
        latents = noise.latents(pipe, "wan", frames_made(pipe, num_frames), common["height"], common["width"], seed)
        return frames_from_output(pipe(latents=latents, **common))[:num_frames]
    if "wan_i2v" in backend.kinds:
        from PIL import Image

        from .effects import to_uint8
        return frames_from_output(backend.pipeline("wan_i2v")(image=Image.fromarray(to_uint8(image)),
                                                               **common))[:num_frames]
    replace = AnchorReplacement(pipe, image, seed)
    return frames_from_output(pipe(callback_on_step_end=replace, callback_on_step_end_tensor_inputs=["latents"],
                                    **common))[:num_frames]


class AnchorReplacement:
    """callback_on_step_end that holds a Wan clip's first latent frame to an anchor image.

    After step i the latents sit at noise level sigmas[i + 1]; frame 0 is set to the anchor's
    latent at that level, (1 - s) x anchor + s x e, with one fixed noise draw e (deterministic in seed).
    """

    def __init__(self, pipe, image: torch.Tensor, seed: int):
        vae = pipe.vae
        pixels = (image.clamp(0, 1) * 2 - 1)[None, :, None].to(vae.device, vae.dtype)  # (1, 3, 1, H, W)
        with torch.no_grad():
            z = vae.encode(pixels).latent_dist.mean
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(z)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(z)
        self.anchor = (z - mean) / std  # the pipeline's normalised latent space
        self.noise = torch.randn(self.anchor.shape, generator=torch.Generator().manual_seed(int(seed))).to(z)

    def __call__(self, pipe, i: int, t, kwargs: dict) -> dict:
        latents = kwargs["latents"]
        sigma = float(pipe.scheduler.sigmas[i + 1])
        first = (1 - sigma) * self.anchor + sigma * self.noise
        latents = torch.cat([first.to(latents), latents[:, :, 1:]], dim=2)
        return {"latents": latents}


class NativeOptions(Strict):
    pass


def native(backend, request: GenerationRequest, options: dict, callback=None):
    """The whole clip in one call of the video model; request fields mapped as `video_fields` says."""
    NativeOptions.model_validate(options)
    prompts = keyframe_prompts(backend, request)
    if len(prompts) > 1 and backend.video_design == "joint":
        raise FieldNotSupportedError("keyframes", [k.model_dump() for k in request.keyframes],
                                     "Wan takes one prompt per call; use sliding_window or segment_chain for keyframes")
    noise = NoisePrior(shared_noise_share(request.temporal_consistency))
    prompt = prompts if len(prompts) > 1 else prompts[0]
    frames = generate_clip(backend, request, prompt, request.num_frames, request.seed, noise=noise)
    Progress("native", "clip", 1, callback).done(0, frames)
    return frames, {"seed": request.seed, "prompt": prompts[0], "num_frames": request.num_frames,
                    "prompts_by_frame": prompts, **noise.record()}


class SlidingWindowOptions(Strict):
    window: int | None = Field(None, ge=2, description="frames per window; None: the model's native length")
    overlap: int = Field(4, ge=0)
    free_noise: bool = Field(False, description="AnimateDiff only: diffusers' FreeNoise in one call")
    context_stride: int = Field(4, ge=1)
    strength: float | None = Field(None, gt=0.0, le=1.0, description="how much each window may change its start; "
                                   "None: from temporal_consistency")


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """Start frames of overlapping windows covering `total` frames; the last window ends at total.

    A video no longer than one window is that one window, whatever the overlap.
    """
    if total <= window:
        return [0]
    if overlap >= window:
        raise ValueError(f"overlap={overlap} must be < window={window}")
    step = window - overlap
    starts = list(range(0, total - window, step))
    return starts + [total - window]


def blend_windows(windows: list[torch.Tensor], starts: list[int], total: int) -> torch.Tensor:
    """Overlapping windows -> one video; in an overlap the weight ramps linearly from the old window to the new."""
    out = torch.zeros(total, *windows[0].shape[1:])
    weight = torch.zeros(total)
    for w, s in zip(windows, starts):
        n = w.shape[0]
        ramp = torch.ones(n)
        prev_end = max((s0 + windows[0].shape[0] for s0 in starts if s0 < s), default=s)
        k = max(0, prev_end - s)  # frames shared with the previous window
        if k:
            ramp[:k] = torch.linspace(0, 1, k + 2)[1:-1]
        nxt = [s1 for s1 in starts if s1 > s]
        if nxt and nxt[0] < s + n:
            m = s + n - nxt[0]
            ramp[n - m:] = torch.minimum(ramp[n - m:], torch.linspace(1, 0, m + 2)[1:-1])
        out[s:s + n] += ramp.view(-1, 1, 1, 1) * w
        weight[s:s + n] += ramp
    return out / weight.view(-1, 1, 1, 1)


def sliding_window(backend, request: GenerationRequest, options: dict, callback=None):
    """A video longer than the model's native length, by overlapping windows (or FreeNoise)."""
    opts = SlidingWindowOptions.model_validate(options)
    total = request.num_frames
    prompts = keyframe_prompts(backend, request)
    schedule = [prompts[max(k for k in prompts if k <= i)] for i in range(total)]
    window = opts.window or backend.preset.native_frames
    noise = NoisePrior(shared_noise_share(request.temporal_consistency))
    if opts.free_noise:
        if backend.video_design != "factorized":
            raise ValueError("free_noise=True needs an AnimateDiff model (diffusers' FreeNoise is AnimateDiff-only)")
        if total <= window:
            raise ValueError(f"free_noise needs more frames ({total}) than its context length (window={window})")
        frames = generate_clip(backend, request, prompts if len(prompts) > 1 else prompts[0], total, request.seed,
                               free_noise=True, context_length=window, context_stride=opts.context_stride)
        Progress("sliding_window", "clip", 1, callback).done(0, frames)
        return frames, {"free_noise": True, "seed": request.seed, "context_length": window,
                        "context_stride": opts.context_stride, "prompts_by_frame": prompts}
    strength = opts.strength or consistency_knobs(request.temporal_consistency)["strength"]
    starts = window_starts(total, window, opts.overlap)
    windows, seeds, window_prompts = [], [], []
    progress = Progress("sliding_window", "window", len(starts), callback)
    for i, s in enumerate(tqdm(starts, desc="sliding_window", disable=len(starts) < 3, leave=False)):
        seed = sub_seed(request.seed, "window", i)
        n = min(window, total)
        if windows:
            shared = windows[-1].shape[0] - (s - starts[i - 1])
            anchor = windows[-1][-shared] if shared > 0 else windows[-1][-1]
            first_new = s + max(0, shared)
        else:
            anchor, first_new = None, 0
        prompt = schedule[min(first_new, total - 1)]  # the prompt in effect at the window's first new frame
        clip = generate_clip(backend, request, prompt, n, seed, image=anchor, strength=strength, noise=noise)
        windows.append(clip)
        seeds.append(seed)
        window_prompts.append(prompt)
        progress.done(i, clip)
    frames = blend_windows(windows, starts, total)
    return frames, {"window": window, "overlap": opts.overlap, "window_starts": starts, "window_seeds": seeds,
                    "window_prompts": window_prompts, "strength": strength, **noise.record()}
