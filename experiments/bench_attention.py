"""Benchmark: the cost of attention capture on the offline zoo, in one process.

1. Time: text-to-image (64x64, 20 steps, guidance 3.0) with capture off and on (every
   cross-attention layer), interleaved round by round so both share the background load.
   Prints the minimum and median seconds of each and the median of per-round on/off ratios
   (goal: <= 1.15).
2. Memory: capture at N and 2N steps. The capture's own tensors are its running sums (exact
   bytes) plus the largest probability chunk it materializes at once; tracemalloc adds the peak
   of Python-side allocations during the run (per-step lists would show here). Storing every
   step's maps instead would cost sums x steps x layers.

    nice -n 10 python experiments/bench_attention.py --rounds 7 --steps 20
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

import torch

from vidlab.attention import AttentionCapture
from vidlab.backends import load_backend

PROMPT = "a red circle in the top left on a white background"


def _generate(pipe, steps: int, batch: int):
    return pipe([PROMPT] * batch, num_inference_steps=steps, guidance_scale=3.0, height=64, width=64,
                output_type="pt", generator=torch.Generator().manual_seed(0)).images


def time_capture(pipe, steps: int, batch: int, rounds: int) -> dict:
    _generate(pipe, steps, batch)  # warm-up
    off, on = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        _generate(pipe, steps, batch)
        off.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with AttentionCapture(pipe, [PROMPT] * batch):
            _generate(pipe, steps, batch)
        on.append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(off, on)]
    return {"steps": steps, "batch": batch, "rounds": rounds,
            "off_s": {"min": min(off), "median": statistics.median(off)},
            "on_s": {"min": min(on), "median": statistics.median(on)},
            "ratio_of_minima": min(on) / min(off), "median_round_ratio": statistics.median(ratios)}


def memory_capture(pipe, steps: int, batch: int) -> dict:
    tracemalloc.start()
    with AttentionCapture(pipe, [PROMPT] * batch) as capture:
        _generate(pipe, steps, batch)
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n_layers = len(capture.layers)
    return {"steps": steps, **capture.memory(), "python_peak_bytes": python_peak,
            "state_shapes": {"/".join(map(str, k)): list(v) for k, v in capture.aggregator.state_shapes().items()},
            "per_step_storage_would_be_bytes": capture.aggregator.state_bytes() // len(capture.aggregator.sums)
            * n_layers * steps}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_backend("shapes-tiny").pipeline("text2img")
    result = {"time": time_capture(pipe, args.steps, args.batch, args.rounds),
              "memory": [memory_capture(pipe, n, args.batch) for n in (args.steps, 2 * args.steps)]}
    n, n2 = result["memory"]
    result["memory_flat"] = {k: n[k] == n2[k] for k in ("state_bytes", "peak_chunk_bytes", "state_tensors")}
    result["python_peak_ratio_2N_over_N"] = n2["python_peak_bytes"] / n["python_peak_bytes"]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
