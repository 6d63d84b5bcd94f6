"""Benchmark: vidlab's batched PSNR + SSIM against a per-frame scikit-image loop, in one process.

Both compute the same four things on the same frames: PSNR and SSIM of consecutive pairs and of
every frame against frame 0 (scikit-image: `structural_similarity(..., channel_axis=2,
data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`). For reference it
also times torchmetrics' batched functions (`peak_signal_noise_ratio` and
`structural_similarity_index_measure(return_full_image=True)`, cropped to the same valid region).

The three run interleaved, round by round, so they share the background load; the script prints
the minimum and median time of each and the speed-up over scikit-image (ratio of minima and median
of per-round ratios). torch runs single-threaded by default, like scikit-image, so the ratio
compares algorithms rather than core counts.

    nice -n 19 python experiments/bench_metrics.py            # 64 and 128 frames of 64x64
    nice -n 19 python experiments/bench_metrics.py --frames 64 --size 128 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from vidlab.metrics import frame_similarity
from vidlab.world import Scene, render_clip


def make_video(num_frames: int, size: int, seed: int = 0) -> torch.Tensor:
    """A shapes-world clip (a moving circle) with mild noise, so that no two frames are identical."""
    clip = render_clip(Scene("circle", "red", "beige", "left", "medium"), num_frames, "right", image_size=size)
    noise = 0.02 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(seed))
    return (clip + noise).clamp(0, 1)


def skimage_loop(frames: torch.Tensor) -> dict[str, np.ndarray]:
    """The baseline: one scikit-image call per pair."""
    video = frames.permute(0, 2, 3, 1).numpy()  # (F, H, W, 3)
    ssim = dict(channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    out = {k: [] for k in ("psnr_consecutive", "ssim_consecutive", "psnr_anchor", "ssim_anchor")}
    for t in range(1, len(video)):
        out["psnr_consecutive"].append(sk_psnr(video[t - 1], video[t], data_range=1.0))
        out["ssim_consecutive"].append(sk_ssim(video[t - 1], video[t], **ssim))
        out["psnr_anchor"].append(sk_psnr(video[0], video[t], data_range=1.0))
        out["ssim_anchor"].append(sk_ssim(video[0], video[t], **ssim))
    return {k: np.array(v) for k, v in out.items()}


def torchmetrics_batched(frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """torchmetrics' functions on the whole batch (valid-region mean, to match scikit-image)."""
    def ssim(a, b):
        _, full = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none", return_full_image=True)
        return full[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))

    def psnr(a, b):
        return peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))

    anchor = frames[:1].expand_as(frames[1:])
    return {"psnr_consecutive": psnr(frames[1:], frames[:-1]), "ssim_consecutive": ssim(frames[1:], frames[:-1]),
            "psnr_anchor": psnr(frames[1:], anchor), "ssim_anchor": ssim(frames[1:], anchor)}


def timed_rounds(methods: dict, rounds: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Seconds per call of each method, interleaved round by round (one warm-up call each first).

    Interleaving gives every method the same share of background load, which on a busy machine
    moves single timings by 2x; the per-round ratio and the minimum are then comparable.
    """
    results = {name: fn() for name, fn in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return times, results


def max_abs_diff(ours: dict[str, torch.Tensor], reference: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest |ours - reference| per output; the anchor's own entry (frame 0) is left out."""
    diffs = {}
    for key, ref in reference.items():
        mine = ours[key].double().numpy()
        mine = mine[1:] if key.endswith("anchor") and len(mine) == len(ref) + 1 else mine
        diffs[key] = float(np.max(np.abs(mine - np.asarray(ref, np.float64))))
    return diffs


def run(num_frames: int, size: int, rounds: int) -> None:
    frames = make_video(num_frames, size)
    methods = {"vidlab batched (frame_similarity)": lambda: frame_similarity(frames),
               "torchmetrics batched": lambda: torchmetrics_batched(frames),
               "scikit-image per-frame loop": lambda: skimage_loop(frames)}
    times, results = timed_rounds(methods, rounds)
    ours, tm_out, reference = results.values()
    base = times["scikit-image per-frame loop"]
    print(f"\n{num_frames} frames of {size}x{size}, consecutive + anchor PSNR and SSIM "
          f"({num_frames - 1} + {num_frames - 1} pairs), torch threads = {torch.get_num_threads()}, {rounds} rounds")
    for name, ts in times.items():
        ratio = statistics.median(b / t for b, t in zip(base, ts))
        print(f"  {name:34s} min {min(ts) * 1e3:7.1f} ms  median {statistics.median(ts) * 1e3:7.1f} ms  "
              f"speed-up over scikit-image: {min(base) / min(ts):5.1f}x (min/min), {ratio:5.1f}x (median per round)")
    for key, diff in max_abs_diff(ours, reference).items():
        print(f"  max |vidlab - scikit-image| {key:17s}: {diff:.2e}")
    tm_diff = max_abs_diff(ours, {k: v.double().numpy() for k, v in tm_out.items()})
    print(f"  max |vidlab - torchmetrics| over all four outputs: {max(tm_diff.values()):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    for num_frames in args.frames:
        run(num_frames, args.size, args.rounds)


if __name__ == "__main__":
    main()
