"""The speed goals of a sweep, each a ratio measured in this one run, on the zoo, uncontended or not:

1. frame_chain against seed 002's loop (`bench_frame_chain.seed_loop`, given vidlab's seeds so the
   frames must agree): goal >= 1.3x, frames within 1/255 mean and 2/255 max; frame_chain also with
   its steps eager (VIDLAB_STEP_GRAPHS=0), to show what the recorded graphs give;
2. workbench overhead: `vidlab.generate(strategy="native")` against the diffusers pipeline call it
   makes, replayed raw with the very same arguments: goal <= 3%;
3. model loads: a sweep of N points (each point alone) loads the model once per process.

Both sides of a ratio alternate (A, B, A, B) so that load from other processes hits both; times
are CPU seconds of this process (wall seconds too). python experiments/bench_speed.py [--repeats 3]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_frame_chain import seed_loop  # noqa: E402

import vidlab  # noqa: E402
from vidlab.backends import cache_info, clear_cache, load_backend  # noqa: E402
from vidlab.config import GenerationRequest  # noqa: E402
from vidlab.sweeps import SweepSpec, run_sweep  # noqa: E402
from vidlab.seeds import sub_seed  # noqa: E402
from vidlab.strategies import STRATEGIES, step_graph  # noqa: E402

PROMPT = "a red circle in the top left on a white background"


def alternate(runs: dict, repeats: int, clock=time.perf_counter) -> tuple[dict, dict, dict]:
    """Each run `repeats` times, in turn: (cpu seconds, wall seconds, last output) by name.
    clock: the wall clock (bench_device gives one that waits for the GPU)."""
    cpu, wall, out = ({name: [] for name in runs} for _ in range(3))
    for _ in range(repeats):
        for name, run in runs.items():
            c0, w0 = time.process_time(), clock()
            out[name] = run()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(clock() - w0)
    return cpu, wall, out


def frame_chain_vs_seed_loop(backend, repeats: int, frames: int, steps: int, clock=None) -> None:
    """Ratio of CPU seconds on the CPU; of wall seconds when given a device `clock`. frame_chain runs
    twice: as it does (steps replayed from recorded graphs) and with VIDLAB_STEP_GRAPHS=0 (eager)."""
    request = GenerationRequest(prompt=PROMPT, fps=16, duration=frames / 16, num_inference_steps=steps, seed=42)
    options = {"controlnet_conditioning_scale": 1.0, "color_coherence": 0.0}
    seeds = [sub_seed(request.seed, "frame", i) for i in range(request.num_frames)]

    def frame_chain(graphs: bool):
        with step_graphs(graphs):
            return STRATEGIES["frame_chain"](backend, request, options)[0]

    runs = {"seed-002 loop": lambda: seed_loop(backend, request, 1.0, seeds=seeds),
            "frame_chain": lambda: frame_chain(True), "frame_chain, eager steps": lambda: frame_chain(False)}
    step_graph.clear()
    cold, _, _ = alternate(runs, 1)  # warm-up; frame_chain records its graphs here
    cpu, wall, out = alternate(runs, repeats, clock or time.perf_counter)
    unit = "cpu"
    if clock is not None:  # on a device, CPU seconds say little: device-synchronized wall seconds
        cpu, unit = wall, "wall"
    diff = np.abs(np.round(out["frame_chain"].numpy() * 255) - np.round(out["seed-002 loop"].numpy() * 255))
    median = {name: statistics.median(seconds) for name, seconds in cpu.items()}
    ratio = median["seed-002 loop"] / median["frame_chain"]
    print(f"1. frame_chain vs seed 002 loop ({frames} frames, {steps} steps): "
          f"{median['seed-002 loop'] / frames:.3f} vs {median['frame_chain'] / frames:.3f}"
          f" {unit} s/frame -> {ratio:.2f}x (goal >= 1.3x; wall "
          f"{statistics.median(wall['seed-002 loop']) / statistics.median(wall['frame_chain']):.2f}x); "
          f"frames agree: uint8 mean |diff| {diff.mean():.3f}, max {diff.max():.0f} "
          f"({'within' if diff.mean() <= 1 and diff.max() <= 2 else 'OUTSIDE'} 1/255 mean, 2/255 max)")
    print(f"   steps eager (VIDLAB_STEP_GRAPHS=0): {median['frame_chain, eager steps'] / frames:.3f} {unit} s/frame -> "
          f"{median['seed-002 loop'] / median['frame_chain, eager steps']:.2f}x; recorded graphs "
          f"{median['frame_chain, eager steps'] / median['frame_chain']:.2f}x over eager steps, same frames: "
          f"{torch.equal(out['frame_chain'], out['frame_chain, eager steps'])}; {step_graph.graph_stats()}")
    print(f"   first run (cold: frame_chain records its graphs): seed loop {cold['seed-002 loop'][0]:.2f} s, "
          f"frame_chain {cold['frame_chain'][0]:.2f} s cpu")


@contextmanager
def step_graphs(on: bool):
    """Within the block, the SD loop replays recorded steps (on) or runs every step eager (off)."""
    before = os.environ.get("VIDLAB_STEP_GRAPHS")
    os.environ["VIDLAB_STEP_GRAPHS"] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["VIDLAB_STEP_GRAPHS"]
        else:
            os.environ["VIDLAB_STEP_GRAPHS"] = before


@contextmanager
def watching(cls, seen: list):
    """Within the block, every call of `cls` appends (args, kwargs, cpu seconds) to `seen`."""
    original = cls.__call__

    def watched(self, *args, **kwargs):
        c0 = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            seen.append((args, dict(kwargs), time.process_time() - c0))

    cls.__call__ = watched
    try:
        yield
    finally:
        cls.__call__ = original


def overhead_over_raw_pipeline(backend, repeats: int, frames: int, steps: int, clock=None) -> None:
    request = GenerationRequest(prompt=PROMPT, fps=16, duration=frames / 16, num_inference_steps=steps, seed=3)
    pipe = backend.pipeline("animatediff")
    captured = []
    with watching(type(pipe), captured):  # the call generate makes, to replay it raw
        vidlab.generate(request, strategy="native", model=backend)
    args, kwargs, _ = captured[0]
    latents = kwargs.get("latents")

    def raw():
        call = dict(kwargs, latents=latents.clone() if latents is not None else None)
        return pipe(*args, **call).frames

    runs = {"raw pipeline call": raw, "vidlab.generate": lambda: vidlab.generate(request, strategy="native",
                                                                                model=backend).frames}
    alternate(runs, 1)
    cpu, wall, out = alternate(runs, repeats, clock or time.perf_counter)
    unit = "cpu"
    if clock is not None:
        cpu, unit = wall, "wall"
    raw_s, ours_s = statistics.median(cpu["raw pipeline call"]), statistics.median(cpu["vidlab.generate"])
    inside = []  # the A/B medians carry run-to-run noise of a few %: also time the pipeline call inside generate
    with watching(type(pipe), inside):
        c0 = time.process_time()
        vidlab.generate(request, strategy="native", model=backend)
        total = time.process_time() - c0
    in_pipeline = sum(seconds for _, _, seconds in inside)
    same = torch.equal(torch.as_tensor(out["raw pipeline call"]).flatten(), out["vidlab.generate"].flatten())
    print(f"2. workbench overhead, native ({frames} frames, {steps} steps): generate {ours_s:.3f} s vs raw "
          f"pipeline {raw_s:.3f} s {unit} -> {100 * (ours_s / raw_s - 1):+.1f}% (goal <= 3%; wall "
          f"{100 * (statistics.median(wall['vidlab.generate']) / statistics.median(wall['raw pipeline call']) - 1):+.1f}%; "
          f"fastest of each (load only adds time): {100 * (min(cpu['vidlab.generate']) / min(cpu['raw pipeline call']) - 1):+.1f}%)"
          f"; time outside the pipeline call within one generate: {total - in_pipeline:.3f} s of {total:.3f} s = "
          f"{100 * (total - in_pipeline) / in_pipeline:.2f}% (cpu); frames equal to the raw call's: {same}")


def loads_per_sweep(points_per_axis: int = 3) -> None:
    clear_cache()
    spec = SweepSpec(name="loads", strategy="frame_chain",
                     base_request={"prompt": PROMPT, "duration": 0.25, "fps": 16, "num_inference_steps": 2},
                     axes={"seed": list(range(points_per_axis)), "options.controlnet_conditioning_scale": [0.8, 1.2]})
    with tempfile.TemporaryDirectory() as store:
        report = run_sweep(spec, store, progress=False, batch_seeds=1)
    info = cache_info()
    print(f"3. a sweep of {report.computed} points (each alone) in one process: {info['misses']} model load(s), "
          f"{info['hits']} cache hits -> {info['misses']} load(s) per process (goal 1)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    backend = load_backend("shapes-tiny", device="cpu")
    print(f"threads={args.threads} repeats={args.repeats} (medians)")
    frame_chain_vs_seed_loop(backend, args.repeats, args.frames, args.steps)
    overhead_over_raw_pipeline(backend, args.repeats, 16, args.steps)
    loads_per_sweep()


if __name__ == "__main__":
    main()
