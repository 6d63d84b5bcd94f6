"""Sweep throughput on the zoo, in one run:

1. batched seeds: one 16-seed point of a strategy, as batched calls (`vidlab.generate_batch` with
   the default memory budget, batched even where 'auto' would not batch on a CPU) vs 16 calls,
   alternated; prints the ratio (goal >= 2x) and checks every video is bit-identical;
2. executors: the same 8-point sweep (4 seeds x 2 control strengths, each point alone) serial,
   on a local process pool and on a local Ray cluster; prints points/s of each, model load
   included (a worker process loads the model once, then keeps it).

python experiments/bench_sweep.py [--threads 2] [--steps 20] [--skip-ray]   (1. on frame_chain, then 2.)
python experiments/bench_sweep.py --strategy NAME|all [--model shapes-tiny-joint]
    1. only, on NAME (or each of the four in turn); the last line of each is `NAME: batched X.XXx`
"""
import argparse
import statistics
import tempfile
import time
import warnings

import torch

import vidlab
from vidlab.backends import load_backend
from vidlab.config import DEFAULT_BATCH_PIXEL_FRAMES
from vidlab.sweeps import ProcessExecutor, SweepSpec, run_sweep

PROMPT = "a red circle in the top left on a white background"
MOTION_PROMPT = "a red circle moves right on a white background"
# each strategy's point: its request (at 16 fps) and options; the video models' points are as long as
# their model's native clip (shapes-tiny: 16 frames), sliding_window's two windows of it
POINTS = {
    "frame_chain": ({"prompt": PROMPT, "duration": 1.0}, {}),
    "segment_chain": ({"prompt": PROMPT, "duration": 1.0}, {"num_segments": 2}),
    "native": ({"prompt": MOTION_PROMPT, "duration": 1.0}, {}),
    "sliding_window": ({"prompt": MOTION_PROMPT, "duration": 1.75}, {"overlap": 4}),
}


def batched_vs_unbatched(strategy: str, seeds: int, steps: int, repeats: int, model="shapes-tiny",
                         clock=time.perf_counter) -> float:
    """Median seconds of `seeds` one-at-a-time calls over one `generate_batch` call (alternated
    `repeats` times, after a short warm-up of each); prints it and whether every video is bit-identical.
    model: a zoo name or a loaded Backend."""
    backend = load_backend(model) if isinstance(model, str) else model
    base, options = POINTS[strategy]
    requests = [dict(base, fps=16, num_inference_steps=steps, seed=s) for s in range(seeds)]
    runs = {"unbatched": lambda: [vidlab.generate(r, strategy=strategy, model=backend, **options) for r in requests],
            "batched": lambda: vidlab.generate_batch(requests, strategy=strategy, model=backend,
                                                     batch_budget=DEFAULT_BATCH_PIXEL_FRAMES, **options)}
    short = [dict(r, num_inference_steps=4) for r in requests]  # warm-up: both sides record their step graphs
    vidlab.generate(short[0], strategy=strategy, model=backend, **options)
    vidlab.generate_batch(short, strategy=strategy, model=backend, batch_budget=DEFAULT_BATCH_PIXEL_FRAMES, **options)
    times, out = {name: [] for name in runs}, {}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = clock()
            out[name] = run()
            times[name].append(clock() - t0)
    identical = sum(torch.equal(a.frames, b.frames) for a, b in zip(out["batched"], out["unbatched"]))
    alone, batched = statistics.median(times["unbatched"]), statistics.median(times["batched"])
    frames = out["batched"][0].frames.shape[0]
    sizes = sorted({v.record["timing"]["batch_size"] for v in out["batched"]})
    print(f"1. a {seeds}-seed {strategy} point on {backend.preset.name} ({frames} frames, {steps} steps, batch size {sizes}): "
          f"unbatched {alone:.1f} s, batched {batched:.1f} s (goal >= 2x); bit-identical videos: {identical}/{seeds}")
    print(f"{strategy}: batched {alone / batched:.2f}x")
    return alone / batched


def executors(steps: int, threads: int, skip_ray: bool) -> None:
    spec = SweepSpec(name="throughput", strategy="frame_chain",
                     base_request={"prompt": PROMPT, "duration": 0.5, "fps": 16, "num_inference_steps": steps},
                     axes={"seed": [0, 1, 2, 3], "options.controlnet_conditioning_scale": [0.8, 1.2]})
    makers = {"serial (this process)": lambda: "local",
              "local processes (2)": lambda: ProcessExecutor(workers=2, threads=max(1, threads // 2))}
    if not skip_ray:
        import ray

        from vidlab.sweeps import RayExecutor
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        makers["ray, local cluster (2 actors)"] = lambda: RayExecutor(num_workers=2, threads=max(1, threads // 2))
    for name, make in makers.items():
        executor = make()
        with tempfile.TemporaryDirectory() as store:
            t0 = time.perf_counter()
            report = run_sweep(spec, store, progress=False, batch_seeds=1, executor=executor)
            seconds = time.perf_counter() - t0
        if not isinstance(executor, str):
            executor.close()
        print(f"2. {name:30s}: {report.computed} points in {seconds:.1f} s -> {report.computed / seconds:.3f} "
              f"points/s (failed {report.failed})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--strategy", choices=[*POINTS, "all"], default=None,
                        help="only the batched-seeds ratio, of this strategy (all: each of the four in turn)")
    parser.add_argument("--model", default="shapes-tiny", help="the zoo model of --strategy's runs")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} (the serial run and the batched point; workers share them)")
    if args.strategy is not None:
        for strategy in POINTS if args.strategy == "all" else [args.strategy]:
            batched_vs_unbatched(strategy, args.seeds, args.steps, args.repeats, args.model)
        return
    batched_vs_unbatched("frame_chain", args.seeds, args.steps, args.repeats)
    executors(args.steps, args.threads, args.skip_ray)


if __name__ == "__main__":
    main()
