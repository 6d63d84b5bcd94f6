"""Every strategy at every dtype on one device, against the CPU at fp32: the one script to run on a GPU.

python experiments/check_device.py --device cuda                     # the zoo, fp32 / fp16 / bf16, both video models
python experiments/check_device.py --device cpu --dtypes fp32 bf16 --json out.json

The zoo runs twice: `shapes-tiny`, whose native and sliding_window use the factorized AnimateDiff
model, and `shapes-tiny-joint`, whose use the joint Wan-style one (WanPipeline: transformer,
frame-wise VAE and UMT5 on the device and dtype). For each model x strategy x dtype it prints
whether the frames are finite, the frame count, the largest
and mean absolute difference against the same request on the CPU at fp32, and the seconds of the
call (after one warm-up call per pipeline). A failure is a row with its error, never a stop.
Chained strategies amplify small numeric differences from frame to frame, so their difference
against the CPU is larger than a single call's (frame_chain fp32 on CUDA measured 0.52 max).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from vidlab.backends import load_backend
from vidlab.config import GenerationRequest
from vidlab.strategies import STRATEGIES

PROMPT = "a red circle moves right slowly on a white background"
OPTIONS = {"frame_chain": {}, "segment_chain": {"num_segments": 2}, "native": {},
           "sliding_window": {"window": 8, "overlap": 4}}


def run_one(backend, strategy: str, request: GenerationRequest) -> tuple[torch.Tensor, float]:
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    frames, _ = STRATEGIES[strategy](backend, request, OPTIONS[strategy])
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    return frames, time.perf_counter() - t0


def check(model: str, device: str, dtypes: list[str], strategies: list[str], steps: int, frames: int) -> list[dict]:
    request = GenerationRequest(prompt=PROMPT, duration=frames / 16, fps=16, resolution="64p",
                                num_inference_steps=steps, seed=3)
    reference = {}
    cpu = load_backend(model, device="cpu", dtype="fp32")
    for s in strategies:
        try:
            reference[s] = run_one(cpu, s, request)[0]
        except Exception as err:  # noqa: BLE001 - reported as a row
            reference[s] = err
    rows = []
    for dtype in dtypes:
        backend = load_backend(model, device=device, dtype=dtype)
        for s in strategies:
            row = {"model": model, "video_design": backend.video_design, "strategy": s,
                   "device": str(backend.device), "dtype": str(backend.dtype).replace("torch.", "")}
            try:
                run_one(backend, s, request)  # warm-up: kernels, pipeline construction
                out, seconds = run_one(backend, s, request)
                row.update(finite=bool(torch.isfinite(out).all()), frames=int(out.shape[0]), seconds=round(seconds, 3))
                ref = reference[s]
                if isinstance(ref, torch.Tensor):
                    diff = (out.float().cpu() - ref).abs()
                    row.update(max_diff_vs_cpu=round(float(diff.max()), 4), mean_diff_vs_cpu=round(float(diff.mean()), 5))
                else:
                    row["cpu_error"] = f"{type(ref).__name__}: {str(ref)[:200]}"
            except Exception as err:  # noqa: BLE001 - reported as a row
                row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["shapes-tiny", "shapes-tiny-joint"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "fp16", "bf16"])
    parser.add_argument("--strategies", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = [row for model in args.models
            for row in check(model, args.device, args.dtypes, args.strategies, args.steps, args.frames)]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
