"""Measure the offline zoo with the shapes-world analyzer (numbers for the model card and tests).

- text-to-image adherence on prompts with seeds, a fifth of them held-out colour-shape combos;
- ControlNet: centroid error against the ground-truth frame whose canny edges conditioned it,
  and edge agreement (F1 of edge pixels within 1 px) as control strength rises;
- img2img: the init frame's attributes kept at a given strength;
- inference cost: seconds per frame at 20 steps with classifier-free guidance.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from ..strategies.image_fields import canny_control
from ..strategies.sd_loop import denoise, embed_prompts, encode_image, latent_shape, noise_batch
from ..world.analyzer import analyze, direction_of
from ..world.captions import captioned_scenes
from ..world.shapes import random_scene, render_batch
from .common import add_noise

ATTRS = ("color", "shape", "background", "position")


def text_to_image(backend, n: int = 200, seed: int = 1234, guidance_scale: float = 5.0, steps: int = 20,
                  batch: int = 50) -> dict:
    """Fraction of generations whose analyzer attributes equal the prompt's, overall and held-out."""
    scenes, prompts, held = captioned_scenes(n, seed)
    hits = {k: [] for k in ATTRS}
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        cond, uncond = embed_prompts(backend, prompts[i:i + batch])
        images = denoise(backend, cond, uncond, noise_batch(backend, range(seed + i, seed + i + len(cond))),
                         num_inference_steps=steps, guidance_scale=guidance_scale)
        for s, img in zip(scenes[i:i + batch], images):
            a = analyze(img)
            for k in ATTRS:
                hits[k].append(getattr(a, k) == getattr(s, k))
    seconds = time.perf_counter() - t0
    held = np.array(held)
    out = {"n": n, "n_heldout": int(held.sum()), "guidance_scale": guidance_scale, "steps": steps,
           "seconds_per_image_batched": seconds / n}
    for k in ATTRS:
        v = np.array(hits[k])
        out[k] = float(v.mean())
        out[f"{k}_heldout"] = float(v[held].mean())
    return out


def edge_f1(a: np.ndarray, b: np.ndarray, tolerance: int = 1) -> float:
    """F1 of edge pixels of a and b (bool (H, W)), a pixel matching within `tolerance` px."""
    kernel = np.ones((2 * tolerance + 1,) * 2, np.uint8)
    da = cv2.dilate(a.astype(np.uint8), kernel).astype(bool)
    db = cv2.dilate(b.astype(np.uint8), kernel).astype(bool)
    precision = (a & db).sum() / max(1, a.sum())
    recall = (b & da).sum() / max(1, b.sum())
    return float(2 * precision * recall / max(1e-9, precision + recall))


def controlnet(backend, n: int = 100, seed: int = 99, scales=(0.0, 0.5, 1.0, 1.5), guidance_scale: float = 5.0,
               steps: int = 20, batch: int = 50) -> dict:
    """Centroid error (px) and edge F1 against the ground truth whose edges condition the ControlNet."""
    scenes, prompts, _ = captioned_scenes(n, seed)
    truth = render_batch(scenes)
    out = {"n": n}
    for scale in scales:
        dist, f1 = [], []
        for i in range(0, n, batch):
            gt = truth[i:i + batch]
            control = torch.stack([canny_control(f) for f in gt])
            cond, uncond = embed_prompts(backend, prompts[i:i + batch])
            images = denoise(backend, cond, uncond, noise_batch(backend, range(seed + i, seed + i + len(gt))),
                             num_inference_steps=steps, guidance_scale=guidance_scale,
                             control=control, control_scale=scale)
            for s, img, ctrl in zip(scenes[i:i + batch], images, control):
                a = analyze(img)
                cx, cy = s.resolved_center()
                truth_centroid = analyze(render_batch([s])[0]).centroid or (cx, cy)
                dist.append(np.hypot(a.centroid[0] - truth_centroid[0], a.centroid[1] - truth_centroid[1])
                            if a.centroid else np.inf)
                f1.append(edge_f1(canny_control(img)[0].numpy() > 0.5, ctrl[0].numpy() > 0.5))
        dist = np.array(dist)
        out[f"scale_{scale}"] = {"centroid_within_3px": float((dist <= 3).mean()),
                                 "median_centroid_error_px": float(np.median(dist)), "edge_f1": float(np.mean(f1))}
    return out


def vae_reconstruction(backend, n: int = 500, seed: int = 555, batch: int = 100) -> dict:
    """Fraction of ground-truth frames whose VAE reconstruction (posterior mean) the analyzer reads right."""
    from ..strategies.sd_loop import decode_latents
    rng = np.random.default_rng([seed, 1])
    scenes = [random_scene(rng, "train") for _ in range(n)]
    right = {k: [] for k in ATTRS}
    for i in range(0, n, batch):
        with torch.no_grad():
            rec = decode_latents(backend, encode_image(backend, render_batch(scenes[i:i + batch])))
        for s, img in zip(scenes[i:i + batch], rec):
            a = analyze(img)
            for k in ATTRS:
                right[k].append(getattr(a, k) == getattr(s, k))
    return {"n": n, **{k: float(np.mean(v)) for k, v in right.items()}}


def img2img(backend, n: int = 100, seed: int = 7, strength: float = 0.3, guidance_scale: float = 5.0,
            steps: int = 20, batch: int = 50) -> dict:
    """Fraction of img2img outputs at `strength` that keep every attribute of the init frame."""
    scenes, prompts, _ = captioned_scenes(n, seed)
    truth = render_batch(scenes)
    kept = {k: [] for k in ATTRS}
    for i in range(0, n, batch):
        init = encode_image(backend, truth[i:i + batch])
        cond, uncond = embed_prompts(backend, prompts[i:i + batch])
        images = denoise(backend, cond, uncond, noise_batch(backend, range(seed + i, seed + i + len(init))),
                         num_inference_steps=steps, guidance_scale=guidance_scale, init_latents=init,
                         strength=strength)
        for s, img in zip(scenes[i:i + batch], images):
            a = analyze(img)
            for k in ATTRS:
                kept[k].append(getattr(a, k) == getattr(s, k))
    all_kept = np.all([kept[k] for k in ATTRS], axis=0)
    return {"n": n, "seed": seed, "strength": strength, "guidance_scale": guidance_scale,
            "all_attributes_kept": float(all_kept.mean()),
            **{k: float(np.mean(v)) for k, v in kept.items()}}


def inference_cost(backend, steps: int = 20, guidance_scale: float = 5.0, repeats: int = 3) -> dict:
    """Seconds per frame for one guided image, pipeline call vs the raw UNet calls alone."""
    pipe = backend.pipeline("text2img")
    prompt = "a red circle in the center on a white background"
    pipe(prompt, num_inference_steps=steps, guidance_scale=guidance_scale, height=64, width=64, output_type="pt")
    t0 = time.perf_counter()
    for r in range(repeats):
        pipe(prompt, num_inference_steps=steps, guidance_scale=guidance_scale, height=64, width=64,
             output_type="pt", generator=torch.Generator().manual_seed(r))
    pipe_s = (time.perf_counter() - t0) / repeats
    unet = backend.components["unet"]
    cond, uncond = embed_prompts(backend, [prompt])
    x = torch.randn(2, *latent_shape(backend, 64, 64)[1:])
    emb = torch.cat([uncond, cond])
    with torch.no_grad():
        unet(x, 500, emb)
        t0 = time.perf_counter()
        for _ in range(repeats * steps):
            unet(x, 500, emb)
    unet_s = (time.perf_counter() - t0) / repeats
    return {"steps": steps, "pipeline_seconds_per_frame": pipe_s, "unet_only_seconds_per_frame": unet_s}


# ---- the motion model (AnimateDiff on the zoo) ---------------------------------------------------

def motion_clips(n: int, seed: int, num_frames: int = 8, heldout_fraction: float = 0.5):
    """n moving clips never drawn in training: a different seed, and part held-out colour-shape combos."""
    from ..world.clips import random_clip
    rng = np.random.default_rng([seed, 31337])
    n_held = int(round(n * heldout_fraction))
    splits = ["train"] * (n - n_held) + ["heldout"] * n_held
    return [random_clip(rng, num_frames, split, p_still=0.0, p_growth=0.0, p_camera=0.0) for split in splits], splits


def clip_report(frames: torch.Tensor, wanted: dict) -> dict:
    """What the analyzer reads from one clip (F, 3, H, W) against the attributes a prompt asks for."""
    return attributes_report([analyze(f) for f in frames], wanted)


def attributes_report(attrs: list, wanted: dict) -> dict:
    """`clip_report` from the analyzer's attributes of a clip's frames (one per frame): the direction
    from the first to the last frame that shows a subject, and how well the frames keep the asked one."""
    centroids = [a.centroid for a in attrs if a.centroid is not None]
    displacement = np.subtract(centroids[-1], centroids[0]) if len(centroids) >= 2 else np.zeros(2)
    first = attrs[0]
    constant = all(a.shape == first.shape and a.color == first.color for a in attrs) and first.shape is not None \
        and first.color is not None
    return {"direction": direction_of(displacement) if len(centroids) >= 2 else None,
            "displacement_px": float(np.hypot(*displacement)),
            "attributes_constant": bool(constant),
            "shape_adherence": float(np.mean([a.shape == wanted["shape"] for a in attrs])),
            "color_adherence": float(np.mean([a.color == wanted["color"] for a in attrs]))}


def motion(backend, n: int = 96, seed: int = 2026, num_frames: int = 8, guidance_scale: float = 3.0,
           steps: int = 20, batch: int = 8) -> dict:
    """Direction, attribute constancy and prompt adherence of the zoo's AnimateDiff clips.

    Direction is right when the subject's centroid moves from the first to the last frame by at
    least 2 px, nearest (by angle) to the direction the prompt names among the 8 directions.
    """
    pipe = backend.pipeline("animatediff")
    clips, splits = motion_clips(n, seed, num_frames)
    rows = []
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        chunk = clips[i:i + batch]
        out = pipe(prompt=[c.caption for c in chunk], num_frames=num_frames, height=64, width=64,
                   guidance_scale=guidance_scale, num_inference_steps=steps, output_type="pt",
                   generator=[torch.Generator().manual_seed(seed + i + j) for j in range(len(chunk))])
        for c, frames in zip(chunk, out.frames):
            r = clip_report(frames, {"shape": c.scene.shape, "color": c.scene.color})
            rows.append({**r, "direction_right": r["direction"] == c.direction, "speed": c.speed,
                         "asked_direction": c.direction})
    seconds = time.perf_counter() - t0
    held = np.array([s == "heldout" for s in splits])

    def frac(key, mask=None):
        v = np.array([r[key] for r in rows], float)
        return float(v[mask].mean()) if mask is not None else float(v.mean())

    speed = {s: float(np.mean([r["displacement_px"] for r in rows if r["speed"] == s])) for s in ("slowly", "quickly")}
    return {"n": n, "n_heldout": int(held.sum()), "num_frames": num_frames, "guidance_scale": guidance_scale,
            "steps": steps, "seconds_per_clip_batched": seconds / n,
            "direction_right": frac("direction_right"), "direction_right_heldout": frac("direction_right", held),
            "attributes_constant": frac("attributes_constant"),
            "attributes_constant_heldout": frac("attributes_constant", held),
            "shape_adherence": frac("shape_adherence"), "color_adherence": frac("color_adherence"),
            "shape_adherence_heldout": frac("shape_adherence", held),
            "color_adherence_heldout": frac("color_adherence", held),
            "mean_displacement_px": speed}


def caption_sensitivity(backend, n: int = 16, seed: int = 2026, timesteps=(300, 500, 700, 900),
                        num_frames: int = 8) -> dict:
    """Does the video model read the motion words? Denoising loss on ground-truth clips with captions changed.

    For n held-out clips, the epsilon-prediction error of the video UNet at each timestep (one fixed
    noise draw) under three captions: the true one, the same with the opposite direction
    ("moves left" for "moves right"), and without the motion phrase. A model that uses the
    direction has a clearly lower loss with the true caption than with the opposite one.
    """
    from ..world.shapes import OPPOSITE
    pipe = backend.pipeline("animatediff")
    clips, _ = motion_clips(n, seed, num_frames)
    pixels = torch.cat([c.render() for c in clips]).to(backend.device, pipe.vae.dtype) * 2 - 1
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
    latents = latents.view(n, num_frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4)
    captions = {"true": [c.caption for c in clips],
                "opposite": [c.caption.replace(f" moves {c.direction} ", f" moves {OPPOSITE[c.direction]} ")
                             for c in clips],
                "no_motion": [c.caption.replace(f" moves {c.direction} {c.speed}", "") for c in clips]}
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents)
    alphas = pipe.scheduler.alphas_cumprod
    loss = {k: {} for k in captions}
    for k, texts in captions.items():
        states, _ = pipe.encode_prompt(texts, backend.device, 1, False, None)
        states = states.repeat_interleave(num_frames, dim=0)
        for t in timesteps:
            noisy = add_noise(latents, noise, alphas[t].to(latents))
            with torch.no_grad():
                pred = pipe.unet(noisy, torch.full((n,), t), states).sample
            loss[k][t] = float(((pred - noise) ** 2).mean())
    ratio = {t: loss["opposite"][t] / loss["true"][t] for t in timesteps}
    return {"n": n, "timesteps": list(timesteps), "loss": loss, "opposite_over_true": ratio}


def sliding_window_seams(backend, n: int = 6, seed: int = 77, num_frames: int = 32, window: int = 16,
                         overlap: int = 8, steps: int = 20) -> dict:
    """32-frame `sliding_window` videos: are shape and colour the same on both sides of every seam?"""
    from ..config import GenerationRequest
    from ..generate import generate
    from ..strategies.sliding_window import window_starts

    clips, _ = motion_clips(n, seed, 8, heldout_fraction=0.0)
    kept, across, constant = [], [], []
    for i, c in enumerate(clips):
        request = GenerationRequest(prompt=c.caption, seed=seed + i, fps=16, duration=num_frames / 16,
                                    resolution="64p", num_inference_steps=steps)
        video = generate(request, strategy="sliding_window", model=backend, window=window, overlap=overlap)
        attrs = [analyze(f) for f in video.frames]
        keys = [(a.shape, a.color) for a in attrs]
        for start in window_starts(num_frames, window, overlap)[1:]:  # frames start-1 .. end of the overlap
            span = keys[start - 1:min(num_frames, start + overlap)]
            across.append(len(set(span)) == 1 and span[0][0] is not None)
        kept.append(all(k == (c.scene.shape, c.scene.color) for k in keys))
        constant.append(len(set(keys)) == 1 and keys[0][0] is not None)
    return {"n": n, "num_frames": num_frames, "window": window, "overlap": overlap,
            "attributes_kept_all_frames": float(np.mean(kept)), "attributes_constant": float(np.mean(constant)),
            "same_across_seams": float(np.mean(across)) if across else None}
