"""The joint stages' training data (`training.joint`): the parts a stage starts from, the frame cache and the
two clip pools encoded once, and the batches drawn from them (see `joint`'s doc for what each stage reads).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..strategies.native import wan_latent_stats
from ..world.captions import caption
from ..world.shapes import SHAPES
from .common import (CORNER_PAIR, render_training_batch, rng_for, scene_attrs, scenes_from_attrs,
                     shape_difference_cells)
from .wan import POOL_FRAMES, TRAIN_FRAMES, build_pool, caption_of


def default_init() -> Path:
    from ..backends.presets import ZOO_PATH
    return Path(ZOO_PATH) / "wan"


def load_parts(init) -> dict:
    """The WanPipeline components of a folder (`init`), the transformer and text encoder trainable."""
    from diffusers import WanPipeline
    pipe = WanPipeline.from_pretrained(init)
    parts = dict(pipe.components)
    parts["vae"].eval().requires_grad_(False)
    return parts


# ---- data: encoded once ---------------------------------------------------------------------

def build_frame_cache(run_dir, vae, n: int = 12_000, seed: int = 7, batch: int = 250) -> Path:
    """Encode n rendered training scenes once: posterior mean/std (n, C, h, w), scene attributes and the
    subjects' centres (n, 2) in pixels."""
    out = Path(run_dir) / "frames.safetensors"
    if out.exists():
        return out
    means, stds, attrs, centres = [], [], [], []
    for k in range(0, n, batch):
        images, _, scenes = render_training_batch(rng_for(seed, k), min(batch, n - k))
        with torch.no_grad():
            post = vae.encode(images[:, :, None]).latent_dist
        means.append(post.mean[:, :, 0])
        stds.append(post.std[:, :, 0])
        attrs.append(scene_attrs(scenes))
        centres.append(torch.tensor([s.resolved_center() for s in scenes]))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    save_file({"mean": torch.cat(means).contiguous(), "std": torch.cat(stds).contiguous(),
               "attrs": torch.cat(attrs), "centre": torch.cat(centres).float()}, out)
    return out


# pool file -> where its clips' frame 0 is, their seed (as the shipped model's pools: labels and latents checked)
POOLS = {"pool": ("centred", 1), "pool_centre": ("centre", 2)}


def build_data(run_dir, init=None, frames: int = 12_000, clips: int = 4_000) -> dict:
    """The frame cache and the two clip pools (`POOLS`), encoded by the VAE of `init` (the zoo's by default)."""
    vae = load_parts(init or default_init())["vae"]
    built = {"frames": str(build_frame_cache(run_dir, vae, frames))}
    for name, (start, seed) in POOLS.items():
        built[name] = str(build_pool(run_dir, clips, seed, start=start, p_growth=0.0, vae=vae, name=name))
    return built


class Batches:
    """Training batches in the pipeline's normalised latent space, deterministic in the step's rng."""

    def __init__(self, run_dir, vae, caption_dropout: float = 0.1, centre_share: float = 0.0,
                 first_share: float = 0.5, shape_cells: bool = False, clip_cells: bool = False,
                 corner_cells: bool = False, square_share: float | None = None):
        self.frames = load_file(Path(run_dir) / "frames.safetensors")
        self.square_share = square_share
        if square_share is not None:
            is_square = self.frames["attrs"][:, 0] == SHAPES.index("square")
            self.squares, self.others = is_square.nonzero()[:, 0], (~is_square).nonzero()[:, 0]
            for name, idx, needed in (("square", self.squares, square_share > 0), ("other", self.others,
                                                                                     square_share < 1)):
                if needed and len(idx) == 0:
                    raise ValueError(f"square_share={square_share} needs {name} scenes; the frame cache in {run_dir} "
                                     "has none")
        if shape_cells and "centre" not in self.frames:
            raise ValueError(f"{Path(run_dir) / 'frames.safetensors'} has no subject centres, which the shape "
                             "weight needs: build the cache again (`joint cache` into a new run folder)")
        self.shape_cells, self.corner_cells = shape_cells or corner_cells, corner_cells
        self.pool = load_file(Path(run_dir) / "pool.safetensors")
        self.centre = load_file(Path(run_dir) / "pool_centre.safetensors") if centre_share > 0 else None
        self.clip_cells = clip_cells
        if clip_cells and any("centres" not in pool for pool in (self.pool, self.centre) if pool is not None):
            raise ValueError(f"the clip pools in {run_dir} keep no subject centres per frame, which the clips' shape "
                             "weight needs: run `joint cache` again (it adds them, checked against the labels)")
        self.mu, self.sd = wan_latent_stats(vae)
        self.caption_dropout = caption_dropout
        self.centre_share = centre_share
        self.first_share = first_share

    def _normalise(self, mean, std):
        """A posterior sample of (B, C, F, h, w) latents, in the pipeline's normalised space."""
        return (mean + std * torch.randn_like(mean) - self.mu) / self.sd

    def _clips(self, rng, n: int, frames: int, pool: dict | None = None, forwards: bool = False,
               with_cells: bool = False):
        """n clips of `pool` (default: the centred one), `frames` frames: x0 (n, C, F, h, w), captions and, if
        `with_cells`, each frame's shape-deciding cells (n, 1, F, h, w) (else None). Read backwards half the
        time and from frame 0 or 1, unless `forwards` (from frame 0, as rendered)."""
        pool = self.pool if pool is None else pool
        idx = rng.integers(0, pool["mean"].shape[0], n)
        reverse = rng.random(n) < 0.5
        offset = rng.integers(0, POOL_FRAMES - TRAIN_FRAMES + 1, n)
        if forwards:
            reverse, offset = np.zeros_like(reverse), np.zeros_like(offset)
        keys = ("mean", "std", "centres") if with_cells else ("mean", "std")
        out = {k: [] for k in keys}
        for i, r, o in zip(idx, reverse, offset):
            for k in keys:  # mean, std (POOL_FRAMES, C, h, w); centres (POOL_FRAMES, 2)
                out[k].append((pool[k][i].flip(0) if r else pool[k][i])[o:o + frames])
        mean = torch.stack(out["mean"]).permute(0, 2, 1, 3, 4)  # (n, C, F, h, w)
        std = torch.stack(out["std"]).permute(0, 2, 1, 3, 4)
        texts = [caption_of(pool["labels"][i].tolist(), bool(r))[0] for i, r in zip(idx, reverse)]
        cells = None
        if with_cells:
            attrs = torch.zeros(n, 5, dtype=torch.long)  # as `scene_attrs`: shape and size are what is read
            attrs[:, 0], attrs[:, 4] = pool["labels"][idx, 0], pool["labels"][idx, 3]
            cells = self._cells(attrs.repeat_interleave(frames, 0), torch.stack(out["centres"]).view(-1, 2),
                                mean.shape[-1]).view(n, frames, -1, *mean.shape[-2:]).transpose(1, 2)
        return self._normalise(mean, std), self._dropped(rng, texts), cells

    def _cells(self, attrs, centres, latent_size: int) -> torch.Tensor:
        """(B, 1, h, w) the shape-deciding cells; with `corner_cells`, (B, 2, h, w): also the cells where a square
        and a circle of the subject's size and place differ, not grown (`common.CORNER_PAIR`; square and circle
        scenes only)."""
        cells = shape_difference_cells(attrs, centres, latent_size)
        if not self.corner_cells:
            return cells
        corners = shape_difference_cells(attrs, centres, latent_size, against=CORNER_PAIR, grow=0)
        return torch.cat([cells, corners], dim=1)

    def _dropped(self, rng, texts: list[str]) -> list[str]:
        return ["" if rng.random() < self.caption_dropout else t for t in texts]

    def _scene_indices(self, rng, n: int) -> torch.Tensor:
        """n frame-cache indices: uniform over the cache, or with `square_share` that share of them squares (the
        first ones) and the rest other shapes."""
        if self.square_share is None:
            return torch.as_tensor(rng.integers(0, self.frames["mean"].shape[0], n))
        n_square = round(n * self.square_share)
        return torch.cat([self.squares[torch.as_tensor(rng.integers(0, len(self.squares), n_square))],
                          self.others[torch.as_tensor(rng.integers(0, len(self.others), n - n_square))]])

    def single_frames(self, rng, n: int):
        """n frames (n, C, 1, h, w): scenes with image captions and, `first_share` of them, first frames of the
        centred pool's clips with their clip captions (where a caption's motion starts: the first pass's job).
        With `square_share`, that share of the scenes are squares.
        Also, with `shape_cells`, (n, 1, 1, h, w) the cells only the shape word decides
        (`common.shape_difference_cells`; zero on the clips' first frames), else None."""
        n_scenes = n - round(n * self.first_share)
        idx = self._scene_indices(rng, n_scenes)
        scenes = scenes_from_attrs(self.frames["attrs"][idx])
        x_scenes = self._normalise(self.frames["mean"][idx][:, :, None], self.frames["std"][idx][:, :, None])
        cells = None
        if self.shape_cells:
            cells = self._cells(self.frames["attrs"][idx], self.frames["centre"][idx], x_scenes.shape[-1])
            cells = torch.cat([cells, cells.new_zeros(n - n_scenes, *cells.shape[1:])])[:, :, None]
        if n == n_scenes:  # no first frames (a small batch, or first_share 0)
            return x_scenes, self._dropped(rng, [caption(s, rng=rng) for s in scenes]), cells
        x_first, t_first, _ = self._clips(rng, n - n_scenes, 1)  # first frames: no cells (see above)
        texts = self._dropped(rng, [caption(s, rng=rng) for s in scenes]) + t_first
        return torch.cat([x_scenes, x_first]), texts, cells

    def clips(self, rng, n: int):
        """n clips, round(n x centre_share) of them from the centre pool (the last ones): x0, captions, cells."""
        n_centre = round(n * self.centre_share)
        with_cells = self.clip_cells
        parts = [self._clips(rng, n - n_centre, TRAIN_FRAMES, with_cells=with_cells)] if n > n_centre else []
        if n_centre:
            parts.append(self._clips(rng, n_centre, TRAIN_FRAMES, self.centre, forwards=True, with_cells=with_cells))
        cells = torch.cat([c for _, _, c in parts]) if with_cells else None
        return torch.cat([x for x, _, _ in parts]), [t for _, texts, _ in parts for t in texts], cells
