"""The speed benchmarks on a given device, with torch.profiler summaries of where the time goes.

    python experiments/bench_device.py --device cuda [--dtype bf16] [--steps 20] [--seeds 16]

Runs, on `--device` with `--dtype` (wall seconds, the device synchronized around each run):
1. frame_chain vs seed 002's loop at the same seeds (bench_speed), goal >= 1.3x;
2. vidlab.generate(native) vs its raw pipeline call (bench_speed), goal <= 3% overhead;
3. a `--seeds`-seed frame_chain point batched vs one seed at a time (bench_sweep), goal >= 2x;
then a torch.profiler table (top ops by self time on the device) of one frame_chain video and
of one batched point. Run it alone on the machine: other processes skew every ratio. On a CPU
it runs too (tests/test_benchmarks.py does, with tiny settings).
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_speed  # noqa: E402
import bench_sweep  # noqa: E402

import vidlab  # noqa: E402
from vidlab.backends import load_backend  # noqa: E402


def synchronized(device: torch.device):
    """A clock that waits for the device's queued work first."""
    def clock():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


def profile_table(device: torch.device, run, title: str, rows: int) -> None:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    run()  # warm-up outside the profile
    with profile(activities=activities) as prof:
        run()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n--- profile: {title} (top {rows} by {sort}) ---")
    print(prof.key_averages().table(sort_by=sort, row_limit=rows))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--profile-rows", type=int, default=15)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backend = load_backend("shapes-tiny", device=args.device, dtype=args.dtype)
    clock = synchronized(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name}), dtype {args.dtype}, torch {torch.__version__}, repeats {args.repeats}")
    bench_speed.frame_chain_vs_seed_loop(backend, args.repeats, args.frames, args.steps, clock=clock)
    bench_speed.overhead_over_raw_pipeline(backend, args.repeats, 16, args.steps, clock=clock)
    bench_sweep.batched_vs_unbatched("frame_chain", args.seeds, args.steps, args.repeats, model=backend, clock=clock)
    request = {"prompt": bench_speed.PROMPT, "duration": args.frames / 16, "fps": 16,
               "num_inference_steps": args.steps}
    profile_table(device, lambda: vidlab.generate(dict(request, seed=0), model=backend),
                  f"one frame_chain video, {args.frames} frames", args.profile_rows)
    profile_table(device, lambda: vidlab.generate_batch([dict(request, seed=s) for s in range(args.seeds)],
                                                        model=backend),
                  f"one batched point of {args.seeds} seeds", args.profile_rows)


if __name__ == "__main__":
    main()
