"""The ladder's measurements: does a video model move the subject the way it is asked?

Every number comes from clips sampled by a `WanPipeline` (the workbench's own sampler) and read
back by the shapes-world analyzer, never from the training loss:

- direction right: the subject's centroid from the first to the last frame, nearest of the 8
  directions, equals the asked one (`evaluation.direction_of`, >= 2 px of motion);
- constancy: the share of frame-to-frame steps that move (>= 1 px) the asked way (nearest of 8);
- speed ratio: mean first-to-last displacement of 'quickly' clips over 'slowly' clips;
- subject kept: the share of frames whose analyzed colour and shape are the asked ones;
- caption sensitivity: how far the displacement moves when only the motion is reversed in the
  caption (same noise), over how far it moves when only the noise changes (same caption):
  mean |d(c, s) - d(opposite c, s)| / mean |d(c, s) - d(c, s')|. A model that ignores the motion
  words scores about 1 or less; one that follows them, many times more.

For a model trained with frame 0 given clean, `anchored_numbers` measures the clip pass alone:
from a true frame 0 at the centre, where every direction is open, does the subject move the way
the caption says, and the opposite way when the caption says the opposite?
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..world.analyzer import analyze, direction_of
from ..world.clips import random_clip
from ..world.shapes import DIRECTIONS, OPPOSITE, SPEEDS
from .evaluation import attributes_report
from .wan_parts import motion_class, scheduler_config


def make_pipeline(transformer, tokenizer, text_encoder, channel_mean, channel_std, vae):
    """A `WanPipeline` around in-memory parts; the VAE's config carries the latent normalisation."""
    from diffusers import UniPCMultistepScheduler, WanPipeline
    vae.register_to_config(latents_mean=[float(v) for v in channel_mean], latents_std=[float(v) for v in channel_std])
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae,
                       scheduler=UniPCMultistepScheduler(**scheduler_config()))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_motions(n: int, seed: int = 4242, num_frames: int = 8, start: str = "fits", stream: int = 99):
    """n clips never drawn in training (another seed), cycling over the 8 directions x 2 speeds; `start`
    as `random_clip`'s ('fits': the subject stays inside; 'centre': frame 0 at the centre)."""
    rng = np.random.default_rng([seed, stream])
    wanted = [(d, s) for d in DIRECTIONS for s in SPEEDS]
    clips = []
    while len(clips) < n:
        d, s = wanted[len(clips) % len(wanted)]
        clip = random_clip(rng, num_frames, "heldout" if len(clips) % 2 else "train", p_still=0.0, p_growth=0.0,
                           p_camera=0.0, directions=(d,), start=start)
        if start == "centre":  # every motion fits a free path: the speed is set, not drawn
            clip = dataclasses.replace(clip, speed=s)
        if clip.direction == d and clip.speed == s:  # random_clip draws the speed, and may fall back
            clips.append(clip)
    return clips


def caption_with(clip, direction: str) -> str:
    return clip.caption.replace(f" moves {clip.direction} ", f" moves {direction} ")


def sample(pipe, conditioning: str, encoder, clips, directions, seeds, steps: int, guidance: float,
           num_frames: int = 8, first_frame: str | None = None) -> list[torch.Tensor]:
    """One clip per (clip, asked direction, seed): (F, 3, 64, 64) each.

    first_frame='clean': a model trained with frame 0 given clean, sampled in two passes
    (`native.wan_two_pass`: frame 0 from the caption, then the clip anchored on it).
    """
    from ..strategies.native import frames_from_output, wan_decode, wan_two_pass
    from .wan_parts import text_tokens
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    common = dict(num_frames=num_frames - 1, height=64, width=64, num_inference_steps=steps,
                  guidance_scale=guidance, generator=generators, output_type="pt")
    if first_frame == "clean":
        call = dict(common, prompt=[caption_with(c, d) for c, d in zip(clips, directions)],
                    max_sequence_length=text_tokens(conditioning))
        with torch.no_grad():
            latents = wan_two_pass(pipe, call, num_frames)
        return [wan_decode(pipe, one[None])[:num_frames] for one in latents]
    if conditioning != "label":
        out = pipe(prompt=[caption_with(c, d) for c, d in zip(clips, directions)],
                   max_sequence_length=text_tokens(conditioning), **common)
    else:
        labels = torch.tensor([motion_class(d, c.speed) for c, d in zip(clips, directions)])
        null = torch.full_like(labels, encoder.null)
        out = pipe(prompt_embeds=encoder(labels), negative_prompt_embeds=encoder(null), **common)
    frames = out.frames
    return [frames_from_output(type(out)(frames=frames[i:i + 1])) for i in range(len(clips))]


def direction_seen(frames) -> str | None:
    """The direction from frame 0's centroid to that of the last frame in which the analyzer finds the
    subject (which may have left the frame); None when frame 0 or every later frame has none."""
    cents = [analyze(f).centroid for f in frames]
    seen = [c for c in cents[1:] if c is not None]
    if cents[0] is None or not seen:
        return None
    return direction_of(np.subtract(seen[-1], cents[0]))


def centre_motions(n: int, seed: int = 4343, num_frames: int = 8):
    """`test_motions` whose frame 0 is at the centre, so every direction is open from it."""
    return test_motions(n, seed, num_frames, start="centre", stream=98)


def anchored_numbers(pipe, n: int = 16, steps: int = 20, guidance: float = 4.0, seed: int = 4343) -> dict:
    """The clip pass alone, for a model trained with frame 0 clean: each test clip's true frame 0 (at the
    centre, so every direction is open) given as the anchor, sampled with its caption and with the
    opposite direction's; the share that moves the asked way (`direction_seen`) under each caption."""
    from ..strategies.native import encode_anchors, wan_decode, wan_two_pass
    clips = centre_motions(n, seed)
    anchors = torch.cat(encode_anchors(pipe, [c.render()[0] for c in clips]))
    numbers = {"n": n, "steps": steps}
    for name, asked in (("direction_right", [c.direction for c in clips]),
                        ("opposite_right", [OPPOSITE[c.direction] for c in clips])):
        call = dict(prompt=[caption_with(c, d) for c, d in zip(clips, asked)], height=64, width=64,
                    num_inference_steps=steps, guidance_scale=guidance,
                    max_sequence_length=pipe.tokenizer.model_max_length,
                    generator=[torch.Generator().manual_seed(seed + i) for i in range(n)])
        with torch.no_grad():
            latents = wan_two_pass(pipe, call, 8, anchors=anchors)
        numbers[name] = float(np.mean([direction_seen(wan_decode(pipe, one[None])) == d
                                       for one, d in zip(latents, asked)]))
    return numbers


def subject_kept(attrs: list, scene) -> list[bool]:
    """Per frame (attrs: the analyzer's, one per frame): are the colour and shape the scene's?"""
    return [a.color == scene.color and a.shape == scene.shape for a in attrs]


def share_by(right, scenes: list, field: str, values) -> dict:
    """The mean of `right` (one bool, or a share, per scene) over the scenes whose `field` is each of `values`
    (a value no scene has is left out)."""
    right = np.asarray(right, dtype=float)
    groups = {v: right[[getattr(s, field) == v for s in scenes]] for v in values}
    return {v: float(g.mean()) for v, g in groups.items() if g.size}


def step_constancy(attrs: list, direction: str, min_step: float = 1.0) -> float:
    """Share of frame-to-frame centroid steps (>= min_step px) nearest to `direction` (attrs: one per frame)."""
    cents = [a.centroid for a in attrs]
    hits = []
    for a, b in zip(cents, cents[1:]):
        if a is None or b is None:
            hits.append(False)
            continue
        named = direction_of(np.subtract(b, a), still_px=min_step)
        hits.append(named == direction)
    return float(np.mean(hits)) if hits else 0.0


def ladder_numbers(pipe, conditioning: str, encoder, n: int = 32, steps: int = 20, guidance: float = 4.0,
                   seed: int = 4242, batch: int = 16, first_frame: str | None = None) -> dict:
    """The must-show numbers on n test motions (see the module doc); first_frame as `sample`'s."""
    clips = test_motions(n, seed)
    rows = []
    for i in range(0, n, batch):
        chunk = clips[i:i + batch]
        k = len(chunk)
        seeds = [seed + i + j for j in range(k)]
        asked = [c.direction for c in chunk]
        runs = sample(pipe, conditioning, encoder, chunk * 3, asked + [OPPOSITE[d] for d in asked] + asked,
                      seeds + seeds + [s + 10_000 for s in seeds], steps, guidance, first_frame=first_frame)
        for j, c in enumerate(chunk):
            attrs = [analyze(f) for f in runs[j]]  # one analyzer pass over the asked clip serves every number
            direction = attributes_report(attrs, {"shape": c.scene.shape, "color": c.scene.color})["direction"]
            rows.append({"direction_right": direction == c.direction, "speed": c.speed,
                         "displacement": _displacement(attrs), "flipped": _displacement(runs[k + j]),
                         "reseeded": _displacement(runs[2 * k + j]), "constancy": step_constancy(attrs, c.direction),
                         "subject_kept": float(np.mean(subject_kept(attrs, c.scene)))})
    disp = {s: float(np.mean([np.hypot(*r["displacement"]) for r in rows if r["speed"] == s])) for s in SPEEDS}
    by_caption = np.mean([np.hypot(*np.subtract(r["displacement"], r["flipped"])) for r in rows])
    by_seed = np.mean([np.hypot(*np.subtract(r["displacement"], r["reseeded"])) for r in rows])
    return {"n": n, "steps": steps, "guidance_scale": guidance,
            "direction_right": float(np.mean([r["direction_right"] for r in rows])),
            "constancy": float(np.mean([r["constancy"] for r in rows])),
            "speed_ratio": disp["quickly"] / max(disp["slowly"], 1e-6), "mean_displacement_px": disp,
            "caption_sensitivity": float(by_caption / max(by_seed, 1e-6)),
            "subject_kept": float(np.mean([r["subject_kept"] for r in rows])), "ci95": intervals(rows)}


def intervals(rows: list[dict], draws: int = 2000, seed: int = 0) -> dict:
    """95% intervals over the clips: Student t for the per-clip shares (direction right, constancy, subject
    kept), a percentile bootstrap (clips resampled within each speed) for the speed ratio."""
    from ..metrics.curves import t_interval
    out = {}
    for key in ("direction_right", "constancy", "subject_kept"):
        t = t_interval([float(r[key]) for r in rows])
        out[key] = [t["ci_low"], t["ci_high"]]
    quick, slow = (np.array([np.hypot(*r["displacement"]) for r in rows if r["speed"] == speed])
                   for speed in ("quickly", "slowly"))
    if quick.size > 1 and slow.size > 1:
        rng = np.random.default_rng(seed)
        ratios = [rng.choice(quick, quick.size).mean() / max(rng.choice(slow, slow.size).mean(), 1e-6)
                  for _ in range(draws)]
        out["speed_ratio"] = [float(v) for v in np.percentile(ratios, [2.5, 97.5])]
    return out


def _displacement(clip) -> tuple[float, float]:
    """Centroid of the last frame minus the first (0, 0 when either has no subject).

    clip: frames (F, 3, H, W), or the analyzer's attributes of them (then nothing is analyzed again).
    """
    if isinstance(clip, torch.Tensor):
        clip = [analyze(clip[0]), analyze(clip[-1])]
    first, last = clip[0].centroid, clip[-1].centroid
    if first is None or last is None:
        return (0.0, 0.0)
    return tuple(np.subtract(last, first))


def rung0_frames(pipe, n: int = 32, steps: int = 20, guidance: float = 4.0, seed: int = 999,
                 split: str = "heldout") -> tuple[list, list]:
    """Rung 0's scenes and the analyzer's reads of their single frames (`num_frames=1`) made by a Wan
    pipeline from the scenes' image captions (held-out colour-shape combos; `split='train'`: training ones)."""
    from ..world.captions import caption
    from ..world.shapes import random_scene
    rng = np.random.default_rng([seed, 0])
    scenes = [random_scene(rng, split) for _ in range(n)]
    prompts = [caption(s, rng=rng) for s in scenes]
    return scenes, [analyze(f) for f in single_frames(pipe, prompts, steps, guidance, seed)]


def single_frames(pipe, prompts: list[str], steps: int = 20, guidance: float = 4.0, seed: int = 999) -> torch.Tensor:
    """(n, 3, 64, 64) in [0, 1]: one frame (`num_frames=1`, pass 1 of a two-pass model) per prompt, prompt i's
    noise seeded with seed + i."""
    from ..strategies.native import wan_decode, wan_frames_to_ask
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    with torch.no_grad():
        latents = pipe(prompt=prompts, num_frames=wan_frames_to_ask(pipe, 1), height=64, width=64,
                       num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                       max_sequence_length=pipe.tokenizer.model_max_length, output_type="latent").frames
    return torch.stack([wan_decode(pipe, one[None])[0] for one in latents])


def image_numbers(pipe, n: int = 32, steps: int = 20, guidance: float = 4.0, seed: int = 999,
                  split: str = "heldout") -> dict:
    """Rung 0 (`rung0_frames`): the share of frames whose analyzed colour, shape, background and position
    (the caption's cell of a 3 x 3 grid, chance 1/9) are the asked ones."""
    scenes, reads = rung0_frames(pipe, n, steps, guidance, seed, split)
    return read_right(reads, scenes, ("color", "shape", "background", "position"))


def round_trip_reads(vae, scenes: list) -> list:
    """The analyzer's reads of the scenes' rendered frames after a VAE round trip (posterior mean)."""
    return [analyze(f) for f in round_trips(vae, scenes)]


def round_trips(vae, scenes: list) -> torch.Tensor:
    """(n, 3, H, W) in [0, 1]: the scenes' rendered frames after a VAE round trip (posterior mean)."""
    from ..world.shapes import render_batch
    pixels = render_batch(scenes) * 2 - 1
    with torch.no_grad():
        rec = vae.decode(vae.encode(pixels[:, :, None]).latent_dist.mean).sample[:, :, 0] / 2 + 0.5
    return rec.clamp(0, 1)


def vae_reconstruction(vae, n: int = 300, seed: int = 555) -> dict:
    """Share of ground-truth frames whose VAE round trip (posterior mean) the analyzer reads right, and
    the shape's share by subject size and by the asked shape."""
    from ..world.shapes import SHAPES, SIZES, random_scene
    rng = np.random.default_rng([seed, 2])
    scenes = [random_scene(rng, "train") for _ in range(n)]
    reads = round_trip_reads(vae, scenes)
    right = [a.shape == s.shape for a, s in zip(reads, scenes)]
    return {**read_right(reads, scenes, ("color", "shape", "background", "position")),
            "shape_by_size": share_by(right, scenes, "size", SIZES),
            "shape_by_shape": share_by(right, scenes, "shape", SHAPES)}


def read_right(reads: list, scenes: list, keys: tuple[str, ...]) -> dict:
    """{'n', then per attribute: the share of frames whose analyzed attribute is their scene's}."""
    return {"n": len(scenes), **{k: float(np.mean([getattr(a, k) == getattr(s, k) for a, s in zip(reads, scenes)]))
                                 for k in keys}}
