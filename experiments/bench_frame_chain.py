"""Peer comparison: seed 002's loop as the article writes it vs vidlab's frame_chain, same request.

The seed loop: frame 0 from the text-to-image pipeline; for each next frame, the previous PIL image
-> numpy -> grayscale -> canny -> PIL control image -> a ControlNet pipeline call with seed 42+i.
vidlab: the same model and seeds through `frame_chain` (prompt encoded once, tensors stay tensors,
the ControlNet's conditioning embedding computed once per frame instead of once per step, plain
attention called directly with the text's keys and values computed once per frame, every step
after the first two replayed from a recorded graph; see sd_loop and step_graph).

Both run on one thread, alternating (A, B, A, B) so that load from other processes hits both.
Prints wall and CPU seconds per frame, their ratios (goal >= 1.3x) and how far the frames are
apart after both are quantized to uint8 (tolerance: mean |diff| <= 1/255, max |diff| <= 2/255).
python experiments/bench_frame_chain.py [--frames 8] [--steps 20] [--repeats 3]
"""
import argparse
import time

import cv2
import numpy as np
import torch
from PIL import Image

from vidlab.backends import load_backend
from vidlab.config import GenerationRequest
from vidlab.seeds import sub_seed
from vidlab.strategies import STRATEGIES
from vidlab.strategies.image_fields import CANNY_THRESHOLDS


def seed_loop(backend, request, scale, seeds=None):
    """The article's loop, on the same pipelines (PIL in, PIL out); seeds: frame i's seed (default
    the article's 42 + i; `bench_speed.py` gives vidlab's sub-seeds, so the frames can be compared)."""
    seeds = seeds or [request.seed + i for i in range(request.num_frames)]
    t2i, cn = backend.pipeline("text2img"), backend.pipeline("controlnet")
    common = dict(num_inference_steps=request.num_inference_steps, guidance_scale=request.guidance_scale,
                  height=request.height, width=request.width)
    prompts = request.prompt_schedule()
    frame = t2i(prompts[0], generator=torch.Generator().manual_seed(seeds[0]), **common).images[0]
    frames = [frame]
    for i in range(1, request.num_frames):
        gray = cv2.cvtColor(np.array(frames[-1]), cv2.COLOR_RGB2GRAY)
        edges = cv2.Canny(gray, *CANNY_THRESHOLDS)
        control = Image.fromarray(np.stack([edges] * 3, axis=-1))
        frame = cn(prompts[i], image=control, controlnet_conditioning_scale=scale,
                   generator=torch.Generator().manual_seed(seeds[i]), **common).images[0]
        frames.append(frame)
    return torch.stack([torch.from_numpy(np.array(f)).permute(2, 0, 1).float() / 255 for f in frames])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    backend = load_backend("shapes-tiny", device="cpu")
    request = GenerationRequest(prompt="a red circle in the top left on a white background", fps=16,
                                duration=args.frames / 16, num_inference_steps=args.steps, seed=42)
    options = {"controlnet_conditioning_scale": args.scale, "color_coherence": 0.0}
    seed_loop(backend, request, args.scale)                       # warm-up both paths
    STRATEGIES["frame_chain"](backend, request, options)
    seeds = [sub_seed(request.seed, "frame", i) for i in range(request.num_frames)]  # vidlab's: comparable frames
    runs = {"seed-002 loop": lambda: seed_loop(backend, request, args.scale, seeds),
            "vidlab": lambda: STRATEGIES["frame_chain"](backend, request, options)[0]}
    wall, cpu, frames = {name: [] for name in runs}, {name: [] for name in runs}, {}
    for _ in range(args.repeats):                                  # alternate, so load drifts hit both
        for name, run in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            frames[name] = run()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    ref, ours = (np.round(frames[name].numpy() * 255) for name in runs)
    diff = np.abs(ours - ref)
    ok = diff.mean() <= 1 and diff.max() <= 2
    n = request.num_frames
    print(f"frames={n} steps={args.steps} repeats={args.repeats} threads=1  (median s/frame)")
    for name in runs:
        print(f"{name:14s}: wall {np.median(wall[name]) / n:.3f}  cpu {np.median(cpu[name]) / n:.3f}")
    for kind, t in (("wall", wall), ("cpu", cpu)):  # each round's seed/vidlab ratio: pairs share the load
        paired = np.array(t["seed-002 loop"]) / np.array(t["vidlab"])
        print(f"speed-up {kind:4s}: {np.median(t['seed-002 loop']) / np.median(t['vidlab']):.2f}x of medians; "
              f"per round {' '.join(f'{r:.2f}' for r in paired)}  (goal >= 1.3x)")
    print(f"frames agree  : uint8 mean |diff| {diff.mean():.3f}/255, max {diff.max():.0f}/255 "
          f"-> {'within' if ok else 'OUTSIDE'} tolerance (mean <= 1/255, max <= 2/255)")


if __name__ == "__main__":
    main()
