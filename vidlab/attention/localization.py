"""Does a word's heat land on the thing it names? Measured on the shapes world, where we know where it is.

For each prompt (a caption of a random scene) and seed: generate on the zoo with capture, read
the subject's bounding box back with the analyzer, dilate it by `dilate` pixels (a latent cell is
4 pixels at 64x64), and compute `box_mass_ratio` = (share of the word's heat inside the box) /
(share of the image the box covers) for the shape word, the colour word, and the word
"background" as a control (it should look outside the box: ratio below 1).

Two versions of the heat: "shown" (min-max normalized, what the plots draw; the excess attention
above the word's floor) and "raw" (the mean attention probability; every pixel gives every token
some probability, so a flat floor pulls this ratio towards 1).
"""
from __future__ import annotations

import numpy as np

from ..strategies.sd_loop import denoise
from ..world.analyzer import analyze
from ..world.captions import SHAPE_WORDS
from ..strategies.sd_loop import embed_prompts, noise_batch
from ..world.captions import captioned_scenes
from .capture import AttentionCapture
from .maps import box_mass_ratio

IMAGE_SIZE = (64, 64)


def _shape_word(maps, shape: str) -> str:
    """The surface form of the shape the caption used ("disc" for a circle, ...)."""
    return next(w for w in maps.names if w.lower() in SHAPE_WORDS[shape])


def localization_records(backend, n: int = 60, seed: int = 2024, guidance_scale: float = 3.0, steps: int = 20,
                         batch: int = 20, dilate: int = 4, groups=(None, "up_blocks")) -> list[dict]:
    """One record per prompt+seed: the ratio of each word, heat version and layer group; None without a subject."""
    scenes, prompts, _ = captioned_scenes(n, seed)
    pipe = backend.pipeline("text2img")
    records = []
    for i in range(0, n, batch):
        chunk = prompts[i:i + batch]
        cond, uncond = embed_prompts(backend, chunk)
        with AttentionCapture(pipe, chunk) as capture:
            images = denoise(backend, cond, uncond, noise_batch(backend, range(seed + i, seed + i + len(chunk))),
                             num_inference_steps=steps, guidance_scale=guidance_scale)
        for j, (scene, prompt, image) in enumerate(zip(scenes[i:i + batch], chunk, images)):
            found = analyze(image)
            record = {"prompt": prompt, "seed": seed + i + j, "shape": scene.shape, "color": scene.color,
                      "analyzer_shape_ok": found.shape == scene.shape, "bbox": found.bbox}
            if found.bbox is not None:
                (x0, y0, x1, y1), (h, w) = found.bbox, IMAGE_SIZE
                grown = (min(x1 + dilate, w - 1) - max(x0 - dilate, 0) + 1) * (min(y1 + dilate, h - 1) - max(y0 - dilate, 0) + 1)
                record["box_share"] = grown / (h * w)  # 1 / box_share is the largest ratio possible
                for group in groups:
                    maps = capture.word_maps(j, group=group)
                    words = {"shape": _shape_word(maps, scene.shape), "color": scene.color, "background": "background"}
                    for role, word in words.items():
                        if word not in maps:
                            continue
                        heat = maps.occurrence(word, 0)[0]  # the first mention: the subject's colour
                        tag = f"{role}_{group or 'all'}"
                        record[f"{tag}_shown"] = box_mass_ratio(heat - heat.min(), found.bbox, IMAGE_SIZE, dilate)
                        record[f"{tag}_raw"] = box_mass_ratio(heat, found.bbox, IMAGE_SIZE, dilate)
            records.append(record)
    return records


def summarize(records: list[dict]) -> dict:
    """Mean, median, 95% bootstrap interval of the mean, and share above 1, of every ratio column."""
    rng = np.random.default_rng(0)
    columns = sorted({k for r in records for k in r if k.endswith(("_shown", "_raw"))})
    shares = [r["box_share"] for r in records if "box_share" in r]
    out = {"n_prompts": len(records), "n_with_subject": len(shares),
           "mean_box_share": float(np.mean(shares)) if shares else None}
    for col in columns:
        v = np.array([r[col] for r in records if col in r])
        boot = rng.choice(v, size=(2000, len(v))).mean(axis=1)
        out[col] = {"n": len(v), "mean": float(v.mean()), "median": float(np.median(v)),
                    "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
                    "share_above_1": float((v > 1).mean())}
    return out
