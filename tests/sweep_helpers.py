"""A slow, logging point function and the sweep that the crash test runs in a subprocess.

    python tests/sweep_helpers.py STORE_DIR LOG_FILE [SEEDS]

runs `crash_spec()` into STORE_DIR; every time the point function *completes* a point it
appends "<pid> <point_id>" to LOG_FILE, so a test can count how often each point was computed.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vidlab.sweeps import SweepSpec, point_id, run_sweep  # noqa: E402

WEIGHTS_HASH = "test-weights-v1"
SLEEP_S = 0.3


def crash_spec(seeds: int = 4) -> SweepSpec:
    """`seeds` seeds x 2 strengths (8 points by default)."""
    return SweepSpec(name="crash", base_request={"prompt": "a red circle in the center on a white background"},
                     strategy="segment_chain", axes={"seed": list(range(seeds)), "options.strength": [0.3, 0.6]})


def slow_point(config: dict, log_path: str, sleep_s: float = SLEEP_S, start_log: str | None = None):
    """Sleep, log the completed point, return metrics that depend on the config (no video).
    start_log: also log "<pid> <point_id>" there when the point starts."""
    if start_log is not None:
        with open(start_log, "a") as fh:
            fh.write(f"{os.getpid()} {point_id(config, WEIGHTS_HASH)}\n")
    time.sleep(sleep_s)
    with open(log_path, "a") as fh:  # one short O_APPEND write per completed point
        fh.write(f"{os.getpid()} {point_id(config, WEIGHTS_HASH)}\n")
        fh.flush()
        os.fsync(fh.fileno())
    seed, strength = config["request"]["seed"], config["options"]["strength"]
    return {"seed_metric": float(seed), "strength_metric": strength * 10}, None


def run(store_dir: str | Path, log_path: str | Path, sleep_s: float = SLEEP_S, seeds: int = 4):
    point_fn = functools.partial(slow_point, log_path=str(log_path), sleep_s=sleep_s)
    return run_sweep(crash_spec(seeds), store_dir, point_fn=point_fn, weights_hash=WEIGHTS_HASH, progress=False)


def read_log(log_path: str | Path) -> list[tuple[int, str]]:
    """(pid, point_id) per completed point, in completion order."""
    path = Path(log_path)
    if not path.exists():
        return []
    return [(int(pid), point) for pid, point in (line.split() for line in path.read_text().splitlines())]


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], seeds=int(sys.argv[3]) if len(sys.argv) > 3 else 4)


def loads_point(config: dict):
    """The default point function, plus which process ran it and how many models that process loaded."""
    from vidlab.backends import cache_info
    from vidlab.sweeps import generate_point

    metrics, video = generate_point(config)
    return {**metrics, "worker_pid": float(os.getpid()), "model_loads": float(cache_info()["misses"])}, video
