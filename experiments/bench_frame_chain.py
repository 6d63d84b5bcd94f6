"""Peer comparison: seed 002's loop as the article writes it vs vidlab's frame_chain, same request.

The seed loop: frame 0 from the text-to-image pipeline; for each next frame, the previous PIL image
-> numpy -> grayscale -> canny -> PIL control image -> a ControlNet pipeline call with seed 42+i.
vidlab: the same model and seeds through `frame_chain` (prompt encoded once, tensors stay tensors,
the ControlNet's conditioning embedding computed once per frame instead of once per step).

Prints both times, the ratio (goal >= 1.3x) and how far the frames are apart
(tolerance: mean |diff| <= 1/255 and max |diff| <= 8/255; the seed loop's frames are 8-bit PIL images).
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
from vidlab.strategies import STRATEGIES
from vidlab.strategies.effects import CANNY_THRESHOLDS


def seed_loop(backend, request, scale):
    """The article's loop, on the same pipelines (PIL in, PIL out)."""
    t2i, cn = backend.pipeline("text2img"), backend.pipeline("controlnet")
    common = dict(num_inference_steps=request.num_inference_steps, guidance_scale=request.guidance_scale,
                  height=request.height, width=request.width)
    prompts = request.prompt_schedule()
    frame = t2i(prompts[0], generator=torch.Generator().manual_seed(request.seed), **common).images[0]
    frames = [frame]
    for i in range(1, request.num_frames):
        gray = cv2.cvtColor(np.array(frames[-1]), cv2.COLOR_RGB2GRAY)
        edges = cv2.Canny(gray, *CANNY_THRESHOLDS)
        control = Image.fromarray(np.stack([edges] * 3, axis=-1))
        frame = cn(prompts[i], image=control, controlnet_conditioning_scale=scale,
                   generator=torch.Generator().manual_seed(request.seed + i), **common).images[0]
        frames.append(frame)
    return torch.stack([torch.from_numpy(np.array(f)).permute(2, 0, 1).float() / 255 for f in frames])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    backend = load_backend("shapes-tiny", device="cpu")
    request = GenerationRequest(prompt="a red circle in the top left on a white background", fps=16,
                                duration=args.frames / 16, num_inference_steps=args.steps, seed=42)
    options = {"controlnet_conditioning_scale": args.scale, "color_coherence": 0.0}
    seed_loop(backend, request, args.scale)                       # warm-up both paths
    STRATEGIES["frame_chain"](backend, request, options)
    t_seed, t_vidlab = [], []
    for _ in range(args.repeats):                                  # alternate, so load drifts hit both
        t0 = time.perf_counter()
        ref = seed_loop(backend, request, args.scale)
        t_seed.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours, _ = STRATEGIES["frame_chain"](backend, request, options)
        t_vidlab.append(time.perf_counter() - t0)
    diff = (ours - ref).abs()
    ok = diff.mean() <= 1 / 255 and diff.max() <= 8 / 255
    print(f"frames={request.num_frames} steps={args.steps} repeats={args.repeats}")
    print(f"seed-002 loop : median {np.median(t_seed):.3f} s  ({np.median(t_seed) / request.num_frames:.3f} s/frame)")
    print(f"vidlab        : median {np.median(t_vidlab):.3f} s  ({np.median(t_vidlab) / request.num_frames:.3f} s/frame)")
    print(f"speed-up      : {np.median(t_seed) / np.median(t_vidlab):.2f}x (goal >= 1.3x)")
    print(f"frames agree  : mean |diff| {255 * float(diff.mean()):.3f}/255, max {255 * float(diff.max()):.1f}/255 "
          f"-> {'within' if ok else 'OUTSIDE'} tolerance (mean <= 1/255, max <= 8/255)")


if __name__ == "__main__":
    main()
