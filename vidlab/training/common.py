"""What every training stage of the zoo shares: architectures, checkpoints, the loop, batches.

A stage is a model, an optimizer and a `loss_fn(step)` that draws its batch from `rng_for(seed,
step)`, so a run resumed at step k draws the same batches as an unbroken one. `run_loop` adds the
lr schedule (warm-up, cosine), gradient clipping, EMA with warm-up and atomic checkpoints.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..io.atomic import atomic_output
from ..world.captions import caption
from ..world.shapes import (BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, Scene, random_scene, render_array,
                            shape_mask)
from ..world.tokenizer import MAX_TOKENS

# ---- architectures ------------------------------------------------------------------------

def vae_config() -> dict:
    return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
                down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8)


def unet_config() -> dict:
    return dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64),
                layers_per_block=1, cross_attention_dim=64, attention_head_dim=8, norm_num_groups=16,
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))


def text_config(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=64,
                bos_token_id=1, eos_token_id=2, pad_token_id=0)


def scheduler_config() -> dict:
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)


# ---- shared training machinery --------------------------------------------------------------

class Checkpoint:
    """Model + optimizer + step under run_dir/stage, saved atomically, resumed on start."""

    def __init__(self, run_dir: Path, stage: str):
        self.dir = Path(run_dir) / stage
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def progress(self) -> dict:
        p = self.dir / "progress.json"
        return json.loads(p.read_text()) if p.exists() else {"step": 0, "losses": [], "seconds": 0.0}

    def load(self, model: torch.nn.Module, optimizer=None, ema: dict | None = None) -> dict:
        progress = self.progress
        if progress["step"] == 0:
            return progress
        model.load_state_dict(load_file(self.dir / "state.safetensors"))
        if optimizer is not None and (self.dir / "optim.pt").exists():
            optimizer.load_state_dict(torch.load(self.dir / "optim.pt", weights_only=True))
        if ema is not None and (self.dir / "ema.safetensors").exists():
            ema.update(load_file(self.dir / "ema.safetensors"))
        return progress

    def save(self, model, optimizer, progress: dict, ema: dict | None = None) -> None:
        def atomic(path: Path, write):
            with atomic_output(path) as tmp:
                write(tmp)
        state, seen = {}, set()
        for k, v in model.state_dict().items():  # tied weights (UMT5's shared embedding) are saved as copies
            state[k] = v.contiguous() if v.data_ptr() not in seen else v.clone()
            seen.add(v.data_ptr())
        atomic(self.dir / "state.safetensors", lambda p: save_file(state, p))
        atomic(self.dir / "optim.pt", lambda p: torch.save(optimizer.state_dict(), p))
        if ema is not None:
            atomic(self.dir / "ema.safetensors", lambda p: save_file({k: v.contiguous() for k, v in ema.items()}, p))
        atomic(self.dir / "progress.json", lambda p: p.write_text(json.dumps(progress)))


@dataclasses.dataclass
class Stage:
    """What a training stage is made of; `train_stage` runs it, tests call `loss_fn` directly."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: object  # step -> loss; deterministic in (seed, step)
    lr: float
    ema: dict | None = None
    warmup: int = 100
    save_every: int = 100


def train_stage(stage: Stage, run_dir, steps: int) -> dict:
    return run_loop(stage.name, Checkpoint(run_dir, stage.name), stage.model, stage.optimizer, stage.loss_fn,
                    steps, stage.lr, save_every=stage.save_every, ema=stage.ema, warmup=stage.warmup)


def lr_at(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warm-up then cosine decay to 10% of base."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def run_loop(name: str, ckpt: Checkpoint, model, optimizer, loss_fn, steps: int, lr: float,
             save_every: int = 100, ema: dict | None = None, ema_decay: float = 0.999,
             warmup: int = 100) -> dict:
    """The training loop every stage shares: lr schedule, progress bar, EMA, checkpoints."""
    progress = ckpt.load(model, optimizer, ema)
    params = dict(model.named_parameters())
    start = progress["step"]
    bar = tqdm(range(start, steps), desc=name, initial=start, total=steps, mininterval=5)
    t0 = time.time()
    for step in bar:
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup) * g.get("lr_scale", 1.0)
        model.train()
        loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if ema is not None:
            ema_step(ema, params, step, ema_decay)
        progress["losses"].append(round(float(loss.detach()), 5))
        bar.set_postfix(loss=f"{np.mean(progress['losses'][-50:]):.4f}")
        progress["step"] = step + 1
        if (step + 1) % save_every == 0 or step + 1 == steps:
            progress["seconds"] += time.time() - t0
            t0 = time.time()
            ckpt.save(model, optimizer, progress, ema)
    return progress


def ema_step(ema: dict, params: dict, step: int, ema_decay: float) -> None:
    """One EMA update with warm-up: early on the average follows the weights closely, so it never
    keeps a large share of the random initialisation (a plain 0.999 EMA over 2,000 steps still holds
    0.999^2000 = 13.5% of it, and measured far worse than the raw weights)."""
    decay = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for k, v in ema.items():
            v.lerp_(params[k].detach(), 1 - decay)


@contextlib.contextmanager
def ema_weights(model: torch.nn.Module, ema: dict):
    """The model with its EMA weights in, in eval mode; its live weights and train mode back afterwards."""
    params = dict(model.named_parameters())
    live = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for k, v in ema.items():
            params[k].copy_(v)
        model.eval()
        try:
            yield model
        finally:
            for k, v in live.items():
                params[k].copy_(v)
            model.train()


class MonitorLog:
    """A stage's measurements while it trains: every `every` steps (never step 0, never a step already
    logged, so a resumed run does not measure twice), `measure(model)` with the EMA weights swapped in,
    appended as one JSON line to `path`."""

    def __init__(self, path, every: int):
        self.path, self.every = Path(path), every
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        self.done = {json.loads(line)["step"] for line in lines if line.strip()}

    def maybe_run(self, step: int, model: torch.nn.Module, ema: dict, measure) -> dict | None:
        if self.every <= 0 or step % self.every or step in self.done or step == 0:
            return None
        t0 = time.time()
        with ema_weights(model, ema):
            numbers = measure(model)
        row = {"step": step, **numbers, "monitor_seconds": round(time.time() - t0, 1)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.done.add(step)
        return row


def run_summary(result: dict, started: float, **labels) -> str:
    """The one JSON line a training command prints at its end: labels, steps, seconds, final loss."""
    return json.dumps({**labels, "step": result["step"], "seconds": round(result["seconds"], 1),
                       "wall_seconds": round(time.time() - started, 1),
                       "final_loss": float(np.mean(result["losses"][-50:]))})


def rng_for(seed: int, step: int) -> np.random.Generator:
    """A generator for one step: resuming at step k draws the same batch as an unbroken run."""
    return np.random.default_rng([seed, step])


EXPORT_DIR = Path("results") / "zoo" / "shapes-tiny"  # where exports go unless told otherwise


def export_target(out_dir=None) -> Path:
    """The folder an export writes into: `out_dir`, else `results/zoo/shapes-tiny`, never the installed
    package unless asked for by path. A default folder starts as a copy of the packaged zoo, so the
    export makes a whole zoo (load it with model='results/zoo/shapes-tiny'); ship it with
    `--out vidlab/zoo/shapes-tiny`."""
    import shutil

    from ..backends.presets import ZOO_PATH
    if out_dir is not None:
        return Path(out_dir)
    if not EXPORT_DIR.exists():
        shutil.copytree(ZOO_PATH, EXPORT_DIR)
    return EXPORT_DIR


LOCAL_KEYS = ("_name_or_path", "is_local", "local_files_only")  # where a part was loaded from, on this machine


def drop_local_paths(folder: Path) -> None:
    """Remove the keys that record where a part was loaded from on this machine from the saved configs."""
    for path in Path(folder).rglob("*.json"):
        config = json.loads(path.read_text())
        if isinstance(config, dict) and any(k in config for k in LOCAL_KEYS):
            path.write_text(json.dumps({k: v for k, v in config.items() if k not in LOCAL_KEYS}, indent=2,
                                       sort_keys=True) + "\n")


def add_noise(latents: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The forward process: sqrt(alpha_bar) x latents + sqrt(1 - alpha_bar) x noise (alpha_bar broadcast)."""
    return alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise


def render_training_batch(rng: np.random.Generator, batch: int, split: str = "train"):
    """Images (B, 3, 64, 64) in [-1, 1], subject masks (B, 1, 64, 64), scenes."""
    scenes = [random_scene(rng, split) for _ in range(batch)]
    images = np.stack([render_array(s) for s in scenes]).astype(np.float32) / 127.5 - 1
    masks = np.stack([shape_mask(s.shape, *s.resolved_center(), s.radius, 64, 64) for s in scenes])
    return (torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(masks)[:, None], scenes)


def subject_weights(cells: torch.Tensor, factor: float) -> torch.Tensor:
    """How every zoo loss counts the subject: 1 on the background, `factor` where `cells` (a {0, 1} map of
    pixels or latent cells) is 1."""
    return 1 + (factor - 1) * cells


def subject_pixel_weights(masks: torch.Tensor, factor: float = 10.0) -> torch.Tensor:
    """`subject_weights` of (B, 1, H, W) subject masks grown by 2 pixels (the outline's edge counts too)."""
    return subject_weights(F.max_pool2d(masks, 5, stride=1, padding=2), factor)


def cells_off_background(x0: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """(B, 1, F, h, w) 1.0 where a latent cell of (B, C, F, h, w) latents differs from its frame's background
    (per-channel median) by more than `threshold` (normalised units): ~9% of cells, the subject and its edge."""
    background = x0.flatten(3).median(dim=3).values[..., None, None]
    return ((x0 - background).norm(dim=1, keepdim=True) > threshold).float()


def shape_difference_cells(attrs: torch.Tensor, centres: torch.Tensor, latent_size: int,
                           image_size: int = 64, against: tuple[str, ...] = SHAPES, grow: int = 1) -> torch.Tensor:
    """(B, 1, h, w) 1.0 on the latent cells where each scene's subject differs from the other shapes of its
    size at its centre (grown by `grow` cells): the cells that only the shape word decides.

    `attrs` as `scene_attrs` (shape and size are read), `centres` (B, 2) in pixels. The shapes are drawn
    analytically, as `world.shapes.shape_polygon` places them (a square's half-side is 0.9 of its size).
    `against`: compare with these shapes only, and mark only scenes whose own shape is one of them
    (`CORNER_PAIR`: a square's corners and a circle's rim, where the two most alike shapes differ).
    """
    unknown = [name for name in against if name not in SHAPES]
    if unknown or len(against) < 2:
        raise ValueError(f"against={against!r} must name two or more of {list(SHAPES)}")
    pix = torch.arange(image_size, dtype=torch.float32) + 0.5
    dx = pix[None, None, :] - centres[:, 0, None, None].float()
    dy = pix[None, :, None] - centres[:, 1, None, None].float()
    r = torch.tensor([SIZES[s] for s in SIZES])[attrs[:, 4]].view(-1, 1, 1) * image_size / 64
    drawn = {"circle": dx ** 2 + dy ** 2 <= r ** 2, "square": torch.maximum(dx.abs(), dy.abs()) <= 0.9 * r,
             "triangle": (dy <= r) & (dx.abs() <= (dy + r) / 2), "diamond": dx.abs() + dy.abs() <= r}
    inside = torch.stack([drawn[name] for name in SHAPES], dim=1)              # (B, shapes, H, W)
    own = inside[torch.arange(len(attrs)), attrs[:, 0]]
    compared = inside[:, [SHAPES.index(name) for name in against]]
    marked = torch.tensor([SHAPES[i] in against for i in attrs[:, 0].tolist()]).view(-1, 1, 1, 1)
    differ = ((compared ^ own[:, None]).any(dim=1, keepdim=True) & marked).float()
    cells = F.adaptive_max_pool2d(differ, latent_size)
    return F.max_pool2d(cells, 2 * grow + 1, stride=1, padding=grow) if grow else cells


CORNER_PAIR = ("square", "circle")


def only_rows_learn(table: torch.nn.Parameter, rows: list[int]) -> None:
    """Let only `rows` of an embedding table learn: the others' gradient is masked to zero (give the
    table weight decay 0, so they stay exactly as they were)."""
    mask = torch.zeros(table.shape[0], 1)
    mask[rows] = 1.0
    table.requires_grad_(True)
    table.register_hook(lambda grad: grad * mask)



def random_captions(rng: np.random.Generator, scenes: list[Scene]) -> list[str]:
    return [caption(s, rng=rng) for s in scenes]


def scene_attrs(scenes: list[Scene]) -> torch.Tensor:
    """(B, 5) indices of shape, colour, background, position, size: what `scenes_from_attrs` reads back."""
    return torch.tensor([[SHAPES.index(s.shape), tuple(COLORS).index(s.color), tuple(BACKGROUNDS).index(s.background),
                          POSITIONS.index(s.position), tuple(SIZES).index(s.size)] for s in scenes])


def scenes_from_attrs(attrs: torch.Tensor) -> list[Scene]:
    return [Scene(SHAPES[a[0]], tuple(COLORS)[a[1]], tuple(BACKGROUNDS)[a[2]], POSITIONS[a[3]], tuple(SIZES)[a[4]])
            for a in attrs.tolist()]


def diffusion_batch(cache: dict, rng: np.random.Generator, batch: int, tokenizer, text_encoder,
                     noise_offset: float = 0.05, caption_dropout: float = 0.1):
    """One noised batch from the latent cache: (noisy, t, noise, text states, weights, index)."""
    idx = torch.from_numpy(rng.integers(0, cache["mean"].shape[0], batch))
    latents = (cache["mean"][idx] + cache["std"][idx] * torch.randn_like(cache["mean"][idx])) * cache["scale"]
    scenes = scenes_from_attrs(cache["attrs"][idx])
    texts = [("" if rng.random() < caption_dropout else c) for c in random_captions(rng, scenes)]
    with torch.no_grad():
        tok = tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
        states = text_encoder(tok.input_ids)[0]
    noise = torch.randn_like(latents) + noise_offset * torch.randn(batch, latents.shape[1], 1, 1)
    t = torch.randint(0, 1000, (batch,))
    alphas = cache["alphas_cumprod"][t].view(-1, 1, 1, 1)
    noisy = add_noise(latents, noise, alphas)
    snr = alphas.view(-1) / (1 - alphas.view(-1))
    weights = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for epsilon prediction
    return noisy, t, noise, states, weights, idx


def load_cache(run_dir) -> dict:
    from diffusers import DDIMScheduler
    cache = load_file(Path(run_dir) / "latents.safetensors")
    cache["scale"] = float(cache["scaling_factor"])
    cache["alphas_cumprod"] = DDIMScheduler(**scheduler_config()).alphas_cumprod
    return cache


