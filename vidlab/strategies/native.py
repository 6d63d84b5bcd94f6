"""native: a video model makes the clip in one call (`generate_clips` also serves sliding_window).

`native`: one pipeline call (AnimateDiff or Wan) makes `num_frames` frames. A joint model trained
with frame 0 given clean (the zoo's staged recipe, `training.joint`) makes them in two passes
(`wan_two_pass`): frame 0 from the caption, then the clip anchored on it. Option `first_frame`
(an image file) starts the clip from the user's image instead: image-to-video.

`native_batch` makes requests that differ only in their seed in shared calls of the video model
(`generate_clips`), each video bit-identical to its request made alone (tests/test_batching.py
checks it on both zoo models).
"""
from __future__ import annotations

import math

import torch
from pydantic import Field, field_validator

from ..config import GenerationRequest, Strict, check_seed_batch
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
        return max(0, num_frames - 1)  # 0 makes one frame
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
    condition (one seed after another). A joint model trained with frame 0 given clean
    (`backend.wan_first_frame == 'clean'`) runs `wan_two_pass`: the anchor (or, without one,
    frame 0 made from the caption) held clean. Any other joint model is text-to-video only:
    its first frame is held to the anchor by replacement, the anchor's latent noised to each
    step's level after every step.
    """
    pipe = backend.pipeline("wan")
    common = dict(common, num_frames=wan_frames_to_ask(pipe, num_frames), max_sequence_length=text_length(pipe))
    if images is not None and "wan_i2v" in backend.kinds:
        from PIL import Image

        from .image_fields import to_uint8
        i2v = backend.pipeline("wan_i2v")
        return [frames_from_output(i2v(image=Image.fromarray(to_uint8(image)), **dict(common, generator=g)))
                [:num_frames] for image, g in zip(images, common["generator"])]
    from .sd_loop import batch_invariant

    if backend.wan_first_frame == "clean":  # a model trained with frame 0 given clean: two passes
        anchors = None if images is None else torch.cat(encode_anchors(pipe, images))
        with batch_invariant([pipe.transformer], chunk=1):
            latents = wan_two_pass(pipe, dict(common, num_videos_per_prompt=len(seeds)), num_frames, anchors)
        return [wan_decode(pipe, one[None])[:num_frames] for one in latents]
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


def encode_anchors(pipe, images: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each image (3, H, W) in [0, 1], encoded alone -> its latent (1, C, 1, h, w) in the pipeline's
    normalised space (posterior mean)."""
    vae = pipe.vae
    mean, std = wan_latent_stats(vae)
    anchors = []
    for image in images:
        pixels = (image.clamp(0, 1) * 2 - 1)[None, :, None].to(vae.device, vae.dtype)  # (1, 3, 1, H, W)
        with torch.no_grad():
            z = vae.encode(pixels).latent_dist.mean
        anchors.append((z - mean.to(z)) / std.to(z))
    return anchors


class FirstFrameHeld:
    """callback_on_step_end that sets frame 0 of every clip back to its clean anchor latent after each step.

    For a joint model trained with frame 0's latent given clean in its noisy input (the zoo's
    `clips` stage, as Wan2.2's text-image-to-video model holds its image frame): the
    transformer always sees the anchor as it is, never noised.
    """

    def __init__(self, anchors: torch.Tensor):
        self.anchors = anchors  # (B, C, 1, h, w), normalised

    def __call__(self, pipe, i: int, t, kwargs: dict) -> dict:
        latents = kwargs["latents"]
        return {"latents": torch.cat([self.anchors.to(latents), latents[:, :, 1:]], dim=2)}


def wan_two_pass(pipe, call: dict, num_frames: int, anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Clip latents (B, C, T, h, w) of a joint model trained with frame 0 given clean.

    Pass 1 (skipped when `anchors` (B, C, 1, h, w) are given, e.g. a user's first frame): frame 0
    from the caption, `num_frames=1`. Pass 2: the clip from noise, frame 0 set to its anchor before
    the first step and after every step (`FirstFrameHeld`), the caption steering the motion.
    call: WanPipeline arguments (prompt, guidance, steps, height, width, one generator per clip);
    each clip's draws come from its own generator, pass 1's first.
    """
    call = {k: v for k, v in call.items() if k not in ("num_frames", "latents", "output_type")}  # set per pass
    generators = call["generator"]
    if anchors is None:
        anchors = pipe(**call, num_frames=wan_frames_to_ask(pipe, 1), output_type="latent").frames
    frames = frames_made(pipe, num_frames)
    shape = (pipe.transformer.config.in_channels, frames, call["height"] // pipe.vae_scale_factor_spatial,
             call["width"] // pipe.vae_scale_factor_spatial)
    noise = torch.stack([torch.randn(shape, generator=g) for g in generators])       # (B, C, T, h, w)
    latents = torch.cat([anchors.to(noise), noise[:, :, 1:]], dim=2)
    return pipe(**call, num_frames=wan_frames_to_ask(pipe, num_frames), latents=latents, output_type="latent",
                callback_on_step_end=FirstFrameHeld(anchors), callback_on_step_end_tensor_inputs=["latents"]).frames


class AnchorReplacement:
    """callback_on_step_end that holds each Wan clip's first latent frame to its anchor image.

    After step i the latents sit at noise level sigmas[i + 1]; frame 0 of clip b is set to its
    anchor's latent at that level, (1 - s) x anchor_b + s x e_b, with one fixed noise draw e_b
    from seed b (each anchor encoded alone, each draw from its own generator).
    """

    def __init__(self, pipe, images: list[torch.Tensor], seeds: list[int]):
        anchors = encode_anchors(pipe, images)
        noises = [torch.randn(z.shape, generator=torch.Generator().manual_seed(int(seed))).to(z)
                  for z, seed in zip(anchors, seeds)]
        self.anchor, self.noise = torch.cat(anchors), torch.cat(noises)  # (B, C, 1, h, w)

    def __call__(self, pipe, i: int, t, kwargs: dict) -> dict:
        latents = kwargs["latents"]
        sigma = float(pipe.scheduler.sigmas[i + 1])
        first = (1 - sigma) * self.anchor + sigma * self.noise
        latents = torch.cat([first.to(latents), latents[:, :, 1:]], dim=2)
        return {"latents": latents}


class NativeOptions(Strict):
    first_frame: str | None = Field(None, description="an image file the clip starts from (image-to-video), "
                                    "resized to the request's resolution; None: text-to-video")

    @field_validator("first_frame")
    @classmethod
    def _readable_image(cls, v):
        if v is not None:
            from ..io.video import load_image
            try:
                load_image(v)
            except OSError as e:  # pydantic reports ValueErrors as the field's error, naming the value
                raise ValueError(str(e)) from None
        return v


def native(backend, request: GenerationRequest, options: dict, callback=None):
    """The whole clip in one call of the video model; request fields mapped as `video_fields` says."""
    ((frames, record),) = native_batch(backend, [request], options, callback)
    return frames, record


def native_batch(backend, requests: list[GenerationRequest], options: dict, callback=None):
    """One (frames, record) per request, the requests differing only in their seed: every seed's
    clip in one call (`generate_clips`), each bit-identical to `native` on its request alone."""
    opts = NativeOptions.model_validate(options)
    check_seed_batch(requests)
    request = requests[0]
    prompts = keyframe_prompts(backend, request)
    if len(prompts) > 1 and backend.video_design == "joint":
        raise FieldNotSupportedError("keyframes", [k.model_dump() for k in request.keyframes],
                                     "Wan takes one prompt per call; use sliding_window or segment_chain for keyframes")
    noise = NoisePrior(shared_noise_share(request.temporal_consistency))
    prompt = prompts if len(prompts) > 1 else prompts[0]
    images = None
    if opts.first_frame is not None:
        from ..io.video import load_image
        if len(prompts) > 1:
            raise FieldNotSupportedError("keyframes", [k.model_dump() for k in request.keyframes],
                                         "an image-to-video clip takes one prompt; drop keyframes or first_frame")
        images = [load_image(opts.first_frame, request.width, request.height)] * len(requests)
    clips = generate_clips(backend, request, prompt, request.num_frames, [r.seed for r in requests], images=images,
                           noise=noise)
    Progress("native", "clip", 1, callback).done(0, torch.cat(clips))  # every seed's frames
    return [(frames, {"seed": r.seed, "prompt": prompts[0], "num_frames": request.num_frames,
                      "prompts_by_frame": prompts, "first_frame": opts.first_frame, **noise.record()})
            for r, frames in zip(requests, clips)]
