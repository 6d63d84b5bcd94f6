"""native and sliding_window: a video model makes the clip; long videos by overlapping windows.

`native`: one pipeline call (AnimateDiff or Wan) makes `num_frames` frames.
`sliding_window`: windows of the model's native length overlapping by `overlap` frames; each
window after the first starts from the previous window's tail (video-to-video for AnimateDiff,
image-to-video for Wan), and overlapping frames are blended linearly. For AnimateDiff,
`free_noise=True` uses diffusers' FreeNoise (shared-noise long video) in one call instead.

Both have a batched form (`native_batch`, `sliding_window_batch`) for requests that differ only
in their seed: the seeds share each call of the video model (`generate_clips`), and each video
is bit-identical to its request made alone (tests/test_batching.py checks it on both zoo models).
"""
from __future__ import annotations

import math

import torch
from pydantic import Field
from tqdm.auto import tqdm

from ..config import GenerationRequest, Strict, check_seed_batch
from ..seeds import sub_seed
from .effects import consistency_knobs
from .events import Progress
from .video_fields import FieldNotSupportedError, NoisePrior, keyframe_prompts, shared_noise_share


def frames_from_output(output) -> torch.Tensor:
    """A pipeline's `output_type='pt'` frames -> (F, 3, H, W) float in [0, 1] on the CPU."""
    return video_frames(output.frames)


def video_frames(frames) -> torch.Tensor:
    """One video as a pipeline's video processor gives it ((1, F, 3, H, W), (F, H, W, 3), a list
    of one) -> (F, 3, H, W) float in [0, 1] on the CPU."""
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
    images = None if image is None else [image]
    return generate_clips(backend, request, prompt, num_frames, [seed], images, strength, free_noise,
                          context_length, context_stride, noise)[0]


def generate_clips(backend, request: GenerationRequest, prompt: str | dict[int, str], num_frames: int,
                   seeds: list[int], images: list[torch.Tensor] | None = None, strength: float = 0.6,
                   free_noise: bool = False, context_length: int | None = None, context_stride: int = 4,
                   noise: NoisePrior = NoisePrior(0.0)) -> list[torch.Tensor]:
    """One clip (num_frames, 3, H, W) per seed (and per anchor of `images`, if given), arguments as
    `generate_clip`: every seed's clip bit-identical to `generate_clip` with that seed alone.

    The seeds share one pipeline call (one batch through the video model, within
    `sd_loop.batch_invariant`); every random draw comes from the seed's own generator, and each
    clip is decoded alone. Two calls cannot be shared: diffusers' FreeNoise path (free_noise, or
    a per-frame prompt dict) and a Wan image-to-video pipeline take one seed after another.
    """
    if not backend.has_video_model:
        raise ValueError(f"model {backend.preset.name!r} has no video model (Wan, motion adapter or video UNet): "
                         "native video needs one (preset 'animatediff', 'wan2.2-ti2v-5b' or 'shapes-tiny')")
    if images is not None and len(images) != len(seeds):
        raise ValueError(f"images has {len(images)} anchors for {len(seeds)} seeds; give one a seed")
    family = "wan" if backend.video_design == "joint" else "animatediff"
    if isinstance(prompt, dict) and (family == "wan" or images is not None):
        raise FieldNotSupportedError("keyframes", prompt, "per-frame prompts need AnimateDiff text-to-video; "
                                     "use sliding_window or segment_chain for keyframes on this model")
    common = dict(height=request.height, width=request.width, num_inference_steps=request.num_inference_steps,
                  guidance_scale=request.guidance_scale,
                  generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds])
    negative = request.negative_prompt or None
    if family == "wan":
        return _wan_clips(backend, dict(common, prompt=prompt, negative_prompt=negative), num_frames, seeds,
                          images, noise)
    if free_noise or isinstance(prompt, dict):
        return [_free_noise_clip(backend, dict(common, prompt=prompt, negative_prompt=negative, generator=g),
                                 num_frames, seed, free_noise, context_length, context_stride, noise)
                for seed, g in zip(seeds, common["generator"])]
    return _animatediff_clips(backend, common, prompt, negative, num_frames, seeds, images, strength, noise)


def _animatediff_clips(backend, common: dict, prompt: str, negative: str | None, num_frames: int, seeds: list[int],
                       images, strength: float, noise: NoisePrior) -> list[torch.Tensor]:
    """AnimateDiff text-to-video, or video-to-video from each seed's anchor repeated, for all seeds
    in one call (the prompt encoded once, its embedding repeated)."""
    from .sd_loop import batch_invariant

    pipe = backend.pipeline("animatediff" if images is None else "animatediff_v2v")
    do_cfg = common["guidance_scale"] > 1.0
    cond, uncond = pipe.encode_prompt(prompt, backend.device, 1, do_cfg, negative)
    b = len(seeds)
    call = dict(common, prompt_embeds=cond.repeat(b, 1, 1), output_type="latent",
                negative_prompt_embeds=uncond.repeat(b, 1, 1) if do_cfg else None)
    if images is None:
        latents = [noise.latents(pipe, "animatediff", num_frames, common["height"], common["width"], s) for s in seeds]
        call.update(num_frames=num_frames, latents=None if latents[0] is None else torch.cat(latents))
    else:
        if int(common["num_inference_steps"] * strength) < 1:  # diffusers would run no step and fail on an empty video
            raise ValueError(f"num_inference_steps={common['num_inference_steps']} x strength={strength:.4g} leaves "
                             "no denoising step for an anchored clip; raise num_inference_steps or the strength")
        call.update(video=torch.stack([torch.stack([image.clamp(0, 1)] * num_frames) for image in images]),
                    strength=strength)                                           # (B, F, 3, H, W)
    with batch_invariant([pipe.unet], chunk=1):
        latents = pipe(**call).frames                                            # (B, C, F, h, w)
    videos = [pipe.decode_latents(one[None]) for one in latents]                 # each clip alone
    return [video_frames(pipe.video_processor.postprocess_video(video=v, output_type="pt")) for v in videos]


def _free_noise_clip(backend, common: dict, num_frames: int, seed: int, free_noise: bool,
                     context_length: int | None, context_stride: int, noise: NoisePrior) -> torch.Tensor:
    """One AnimateDiff clip through diffusers' FreeNoise path: shared-noise long video, or per-frame prompts."""
    pipe = backend.pipeline("animatediff")
    prompt = common["prompt"]
    per_frame = isinstance(prompt, dict)
    if per_frame:
        # diffusers reads a prompt dict through FreeNoise's per-frame path; a context as long as the
        # clip means one window and no noise shuffling. Each prompt also at the frame before the next
        # keyframe, so the interpolation between keyframes is a switch, not a ramp.
        keys = sorted(prompt)
        common["prompt"] = {**prompt, **{nxt - 1: prompt[cur] for cur, nxt in zip(keys, keys[1:]) if nxt - 1 > cur}}
    pipe.enable_free_noise(context_length=context_length or (num_frames if per_frame and not free_noise
                                                             else backend.preset.native_frames),
                           context_stride=context_stride)
    latents = None if free_noise else noise.latents(pipe, "animatediff", num_frames, common["height"],
                                                    common["width"], seed)
    try:
        return frames_from_output(pipe(num_frames=num_frames, latents=latents, output_type="pt", **common))
    finally:
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


def _wan_clips(backend, common: dict, num_frames: int, seeds: list[int], images, noise: NoisePrior) -> list:
    """Wan clips, text-to-video or anchored on each seed's image as its first frame.

    A Wan model with an image-to-video pipeline (Wan2.2) takes the anchor as its image
    condition (one seed after another). The zoo's joint model is text-to-video only: its first
    frame is held to the anchor by replacement, the anchor's latent noised to each step's level
    after every step.
    """
    pipe = backend.pipeline("wan")
    common = dict(common, num_frames=wan_frames_to_ask(pipe, num_frames), max_sequence_length=text_length(pipe))
    if images is not None and "wan_i2v" in backend.kinds:
        from PIL import Image

        from .effects import to_uint8
        i2v = backend.pipeline("wan_i2v")
        return [frames_from_output(i2v(image=Image.fromarray(to_uint8(image)), **dict(common, generator=g)))
                [:num_frames] for image, g in zip(images, common["generator"])]
    from .sd_loop import batch_invariant

    call = dict(common, num_videos_per_prompt=len(seeds), output_type="latent")
    if images is None:
        latents = [noise.latents(pipe, "wan", frames_made(pipe, num_frames), common["height"], common["width"], s)
                   for s in seeds]
        call["latents"] = None if latents[0] is None else torch.cat(latents)
    else:
        call.update(callback_on_step_end=AnchorReplacement(pipe, images, seeds),
                    callback_on_step_end_tensor_inputs=["latents"])
    with batch_invariant([pipe.transformer], chunk=1):
        latents = pipe(**call).frames                                            # (B, C, T, h, w)
    return [wan_decode(pipe, one[None])[:num_frames] for one in latents]


def wan_latent_stats(vae) -> tuple[torch.Tensor, torch.Tensor]:
    """A Wan VAE's per-channel latent mean and std, (1, C, 1, 1, 1) float32 on the CPU: the
    pipeline's normalised latents are (z - mean) / std."""
    return (torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1),
            torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1))


def wan_decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """One clip's latents (1, C, T, h, w), in the pipeline's normalised space -> (F, 3, H, W) in [0, 1],
    as WanPipeline decodes them."""
    vae = pipe.vae
    latents = latents.to(vae.device, vae.dtype)
    mean, std = (s.to(latents) for s in wan_latent_stats(vae))
    with torch.no_grad():
        video = vae.decode(latents / (1.0 / std) + mean, return_dict=False)[0]
    return video_frames(pipe.video_processor.postprocess_video(video, output_type="pt"))


class AnchorReplacement:
    """callback_on_step_end that holds each Wan clip's first latent frame to its anchor image.

    After step i the latents sit at noise level sigmas[i + 1]; frame 0 of clip b is set to its
    anchor's latent at that level, (1 - s) x anchor_b + s x e_b, with one fixed noise draw e_b
    from seed b (each anchor encoded alone, each draw from its own generator).
    """

    def __init__(self, pipe, images: list[torch.Tensor], seeds: list[int]):
        vae = pipe.vae
        mean, std = wan_latent_stats(vae)
        anchors, noises = [], []
        for image, seed in zip(images, seeds):
            pixels = (image.clamp(0, 1) * 2 - 1)[None, :, None].to(vae.device, vae.dtype)  # (1, 3, 1, H, W)
            with torch.no_grad():
                z = vae.encode(pixels).latent_dist.mean
            anchors.append((z - mean.to(z)) / std.to(z))                  # the pipeline's normalised space
            noises.append(torch.randn(z.shape, generator=torch.Generator().manual_seed(int(seed))).to(z))
        self.anchor, self.noise = torch.cat(anchors), torch.cat(noises)  # (B, C, 1, h, w)

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
    ((frames, record),) = native_batch(backend, [request], options, callback)
    return frames, record


def native_batch(backend, requests: list[GenerationRequest], options: dict, callback=None):
    """One (frames, record) per request, the requests differing only in their seed: every seed's
    clip in one call (`generate_clips`), each bit-identical to `native` on its request alone."""
    NativeOptions.model_validate(options)
    check_seed_batch(requests)
    request = requests[0]
    prompts = keyframe_prompts(backend, request)
    if len(prompts) > 1 and backend.video_design == "joint":
        raise FieldNotSupportedError("keyframes", [k.model_dump() for k in request.keyframes],
                                     "Wan takes one prompt per call; use sliding_window or segment_chain for keyframes")
    noise = NoisePrior(shared_noise_share(request.temporal_consistency))
    prompt = prompts if len(prompts) > 1 else prompts[0]
    clips = generate_clips(backend, request, prompt, request.num_frames, [r.seed for r in requests], noise=noise)
    Progress("native", "clip", 1, callback).done(0, torch.cat(clips))  # every seed's frames
    return [(frames, {"seed": r.seed, "prompt": prompts[0], "num_frames": request.num_frames,
                      "prompts_by_frame": prompts, **noise.record()}) for r, frames in zip(requests, clips)]


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
    ((frames, record),) = sliding_window_batch(backend, [request], options, callback)
    return frames, record


def sliding_window_batch(backend, requests: list[GenerationRequest], options: dict, callback=None):
    """One (frames, record) per request, the requests differing only in their seed: window i of
    every seed in one call (`generate_clips`, each seed anchored on its own previous window),
    each video bit-identical to `sliding_window` on its request alone. FreeNoise runs the seeds
    one after another (diffusers' FreeNoise path takes one video a call)."""
    opts = SlidingWindowOptions.model_validate(options)
    check_seed_batch(requests)
    request = requests[0]
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
        clips = generate_clips(backend, request, prompts if len(prompts) > 1 else prompts[0], total,
                               [r.seed for r in requests], free_noise=True, context_length=window,
                               context_stride=opts.context_stride)
        Progress("sliding_window", "clip", 1, callback).done(0, torch.cat(clips))
        return [(frames, {"free_noise": True, "seed": r.seed, "context_length": window,
                          "context_stride": opts.context_stride, "prompts_by_frame": prompts})
                for r, frames in zip(requests, clips)]
    strength = opts.strength or consistency_knobs(request.temporal_consistency)["strength"]
    starts = window_starts(total, window, opts.overlap)
    windows, seeds, window_prompts = [], [], []  # windows[i]: window i of every seed
    progress = Progress("sliding_window", "window", len(starts), callback)
    for i, s in enumerate(tqdm(starts, desc="sliding_window", disable=len(starts) < 3, leave=False)):
        seeds.append([sub_seed(r.seed, "window", i) for r in requests])
        n = min(window, total)
        if windows:
            shared = windows[-1][0].shape[0] - (s - starts[i - 1])
            anchors = [w[-shared] if shared > 0 else w[-1] for w in windows[-1]]  # each seed's own
            first_new = s + max(0, shared)
        else:
            anchors, first_new = None, 0
        prompt = schedule[min(first_new, total - 1)]  # the prompt in effect at the window's first new frame
        clips = generate_clips(backend, request, prompt, n, seeds[-1], images=anchors, strength=strength, noise=noise)
        windows.append(clips)
        window_prompts.append(prompt)
        progress.done(i, torch.cat(clips))
    return [(blend_windows([w[b] for w in windows], starts, total),
             {"window": window, "overlap": opts.overlap, "window_starts": starts,
              "window_seeds": [seed[b] for seed in seeds], "window_prompts": window_prompts, "strength": strength,
              **noise.record()})
            for b in range(len(requests))]
