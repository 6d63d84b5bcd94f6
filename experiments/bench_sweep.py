"""Sweep throughput on the zoo, in one run:

1. batched seeds: one 16-seed point of frame_chain, as one batched call vs 16 calls, alternated;
   prints the ratio (goal >= 2x) and checks every frame is bit-identical;
2. executors: the same 8-point sweep (4 seeds x 2 control strengths, each point alone) serial,
   on a local process pool and on a local Ray cluster; prints points/s of each, model load
   included (a worker process loads the model once, then keeps it).

python experiments/bench_sweep.py [--threads 2] [--steps 20] [--skip-ray]
"""
import argparse
import statistics
import tempfile
import time
import warnings

import torch

import vidlab
from vidlab.backends import load_backend
from vidlab.experiments import ProcessExecutor, SweepSpec, run_sweep

PROMPT = "a red circle in the top left on a white background"


def batched_vs_unbatched(seeds: int, steps: int, repeats: int, backend=None, clock=time.perf_counter) -> None:
    backend = backend or load_backend("shapes-tiny")
    requests = [{"prompt": PROMPT, "duration": 1.0, "fps": 16, "num_inference_steps": steps, "seed": s}
                for s in range(seeds)]
    runs = {"unbatched": lambda: [vidlab.generate(r, model=backend) for r in requests],
            "batched": lambda: vidlab.generate_batch(requests, model=backend)}
    short = [dict(r, duration=2 / 16) for r in requests]  # warm-up: both sides record their step graphs
    vidlab.generate(short[0], model=backend), vidlab.generate_batch(short, model=backend)
    times, out = {name: [] for name in runs}, {}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = clock()
            out[name] = run()
            times[name].append(clock() - t0)
    identical = sum(torch.equal(a.frames, b.frames) for a, b in zip(out["batched"], out["unbatched"]))
    alone, batched = statistics.median(times["unbatched"]), statistics.median(times["batched"])
    print(f"1. a {seeds}-seed frame_chain point (16 frames, {steps} steps): unbatched {alone:.1f} s, batched "
          f"{batched:.1f} s -> batched/unbatched speed {alone / batched:.2f}x (goal >= 2x); "
          f"bit-identical videos: {identical}/{seeds}")


def executors(steps: int, threads: int, skip_ray: bool) -> None:
    spec = SweepSpec(name="throughput", strategy="frame_chain",
                     base_request={"prompt": PROMPT, "duration": 0.5, "fps": 16, "num_inference_steps": steps},
                     axes={"seed": [0, 1, 2, 3], "options.controlnet_conditioning_scale": [0.8, 1.2]})
    makers = {"serial (this process)": lambda: "local",
              "local processes (2)": lambda: ProcessExecutor(workers=2, threads=max(1, threads // 2))}
    if not skip_ray:
        import ray

        from vidlab.experiments import RayExecutor
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
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} (the serial run and the batched point; workers share them)")
    batched_vs_unbatched(args.seeds, args.steps, args.repeats)
    executors(args.steps, args.threads, args.skip_ray)


if __name__ == "__main__":
    main()
