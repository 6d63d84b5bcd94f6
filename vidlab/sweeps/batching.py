"""Batched seeds: the points of a sweep that differ only in their seed, made by one batched generation.

`vidlab.generate_batch` gives each seed's video bit-identical to the seed's own run (see
`strategies.sd_loop.batch_invariant`), so the store, the point ids and the sweep report do not
depend on how points were grouped; the manifest records each point's `batch_size`, and its
wall time is its share of the batch's. A batch that fails is run again one point at a time,
so one bad point never fails its neighbours.

>>> cfg = lambda seed, scale: {"request": {"seed": seed, "prompt": "p"}, "strategy": "frame_chain",
...                            "model": "m", "options": {"scale": scale}}
>>> jobs = [(cfg(s, c), 1) for c in (1, 2) for s in (0, 1, 2)]
>>> [[job[0]["request"]["seed"] for job in b] for b in seed_batches(jobs, 2, lambda j: j[0])]
[[0, 1], [2], [0, 1], [2]]
"""
from __future__ import annotations

import time
from typing import Callable

from .memory import PeakMemory
from .points import point_backend, point_metrics
from .spec import canonical_json

BatchFn = Callable[[list], list]  # configs -> [(metrics, video), ...], one per config, in order


def batch_key(config: dict) -> str | None:
    """What points must share to be batched: everything but the seed; None where the strategy
    does not batch on the device its points run on (`strategies.batches_on`)."""
    from ..backends.loading import default_device_dtype
    from ..backends.presets import PRESETS
    from ..strategies import batches_on
    preset = PRESETS.get(config.get("model"))
    given = config.get("backend", {})
    family = given.get("family") or (preset.family if preset else None)
    if not batches_on(config.get("strategy"), default_device_dtype(given.get("device"))[0], family):
        return None
    request = {k: v for k, v in config["request"].items() if k != "seed"}
    return canonical_json({**config, "request": request})


def seed_batches(jobs: list, max_size: int, config: Callable = lambda job: job[0].config) -> list[list]:
    """`jobs` grouped into batches of at most `max_size` that differ only in seed, in order of
    each batch's first job; a job that cannot be batched is a batch of its own."""
    if max_size < 1:
        raise ValueError(f"batch_seeds={max_size} must be >= 1")
    open_batches: dict[str, list] = {}
    batches: list[list] = []
    for job in jobs:
        key = batch_key(config(job)) if max_size > 1 else None
        if key is None:
            batches.append([job])
            continue
        batch = open_batches.get(key)
        if batch is None or len(batch) >= max_size:
            batch = open_batches[key] = []
            batches.append(batch)
        batch.append(job)
    return batches


def generate_points(configs: list[dict]) -> list[tuple[dict, object]]:
    """The default batch function: `vidlab.generate_batch` on the configs, then `video_metrics` of each."""
    from ..generate import generate_batch
    from ..config import parse_request

    first = configs[0]
    requests = [parse_request(c["request"]) for c in configs]
    videos = generate_batch(requests, strategy=first["strategy"], model=point_backend(first), **first["options"])
    return [(point_metrics(video, r.full_prompt()), video) for r, video in zip(requests, videos)]


def run_batch(jobs: list, batch_fn: BatchFn, run_alone: Callable, record: Callable, trace_python_memory: bool):
    """One batched call for `jobs` [(point, attempt), ...], each point recorded with its share of the
    time; if the call fails, every point again alone (`run_alone(point, attempt)`)."""
    memory = PeakMemory(trace_python_memory)
    t0 = time.perf_counter()
    try:
        with memory:
            outputs = batch_fn([point.config for point, _ in jobs])
        if not isinstance(outputs, list) or len(outputs) != len(jobs):
            raise TypeError(f"batch_fn must return a list of {len(jobs)} (metrics, video) pairs, "
                            f"got {type(outputs).__name__}")
    except Exception:  # noqa: BLE001 - each point alone records its own error
        return [run_alone(point, attempt) for point, attempt in jobs]
    share = (time.perf_counter() - t0) / len(jobs)
    return [record(point, attempt, output, share, memory.result, len(jobs))
            for (point, attempt), output in zip(jobs, outputs)]
