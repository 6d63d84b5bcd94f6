"""Resumable sweeps: run every missing point of a grid, record each one, survive a crash.

`run_sweep` reads the grid, skips the points whose manifest says "ok", runs the others
(each measured: wall time of the point function, peak memory, see `memory.py`), records a
failure with its error and traceback instead of stopping, retries the failed points alone
up to `spec.max_retries` more times at the end, and watches for seed 000's slowdown
(see `monitor.py`). A failed point is attempted again by the next `run_sweep` call too.
Killing the process at any moment loses at most the point in flight. One sweep at a time
writes into a store (a lock file; a second one raises RuntimeError).

>>> spec = SweepSpec(name="demo", base_request={"prompt": "a red circle"}, strategy="frame_chain",
...                  axes={"seed": [0, 1]})
>>> import tempfile
>>> report = run_sweep(spec, tempfile.mkdtemp(), point_fn=lambda config: ({"seed": config["request"]["seed"]}, None),
...                    progress=False)
>>> report.computed, report.skipped, report.failed, list(report.table["seed"])
(2, 0, 0, [0, 1])
"""
from __future__ import annotations

import dataclasses
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm.auto import tqdm

from .executors import get_executor
from .memory import PeakMemory
from .monitor import SlowdownAlert, SlowdownMonitor
from .spec import Point, SweepSpec, code_identity, expand_grid, load_sweep_spec
from .store import ResultsStore

PointFn = Callable[[dict], tuple]  # config -> (metrics: dict[str, float], video or None)


def generate_point(config: dict) -> tuple[dict, object]:
    """The default point function: `vidlab.generate` on the point's config, then `video_metrics`."""
    from .. import generate
    from ..config import parse_request
    from ..metrics import video_metrics

    request = parse_request(config["request"])
    video = generate(request, strategy=config["strategy"], model=config["model"], **config["options"])
    record = video.record.get("strategy_record") or {}
    # seams: where segments start (segment_chain) or windows start (sliding_window)
    segment_starts = record.get("segment_starts") or record.get("window_starts")
    metrics = video_metrics(video.frames, prompt=request.full_prompt(), segment_starts=segment_starts)
    return metrics, video


def check_strategy(strategy: str) -> None:
    """A strategy name `generate` will accept, checked before the first point rather than at every one."""
    from ..strategies import STRATEGIES
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not one of {sorted(STRATEGIES)}")


def default_weights_hash(model: str) -> str:
    """The weights hash `generate` records for `model` (loads it once into the backend LRU cache)."""
    from ..backends import load_backend
    return load_backend(model).weights_hash


@dataclasses.dataclass(frozen=True)
class PointResult:
    """What the sweep loop needs back from one attempt (the full record is in the manifest)."""

    point_id: str
    status: str          # "ok" | "failed"
    attempts: int
    wall_time_s: float
    peak_memory_bytes: int | None
    error: str | None = None
    retryable: bool = True  # False: a deterministic error (validation, shape), the same every time


# errors that come out the same on every try: not retried (resource and transient ones are)
DETERMINISTIC_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError,
                        AssertionError, ZeroDivisionError)
# RuntimeErrors that are torch's shape and type checks: the same every time
DETERMINISTIC_RUNTIME = ("shape", "size mismatch", "dimension", "dtype", "must match", "expected")


def is_retryable(err: BaseException) -> bool:
    """Whether trying again may help: memory, disk, network, time-outs, a dead worker, other runtime
    errors, yes; validation, type and shape errors (torch's RuntimeErrors about shapes and dtypes), no.

    >>> is_retryable(MemoryError()), is_retryable(ValueError("seed=-1")), is_retryable(OSError(28, "No space"))
    (True, False, True)
    """
    if isinstance(err, (MemoryError, TimeoutError, ConnectionError, OSError)):
        return True
    if isinstance(err, DETERMINISTIC_ERRORS):
        return False
    if isinstance(err, RuntimeError):
        return not any(word in str(err).lower() for word in DETERMINISTIC_RUNTIME)
    return True


def run_point(point: Point, point_fn: PointFn, store: ResultsStore, attempts: int = 1, weights_hash: str = "",
              sweep: str = "", trace_python_memory: bool = False) -> PointResult:
    """One attempt at a point: call `point_fn(config)`, measure it, write its files (manifest last).

    Wall time covers the point function only (not writing the MP4). An exception from the
    point function, or from writing its results, is recorded as a failed point, not raised;
    if even the failure cannot be written (a full disk), the result says so and the sweep goes on.
    """
    memory, wall = PeakMemory(trace_python_memory), None
    code = code_identity(point.config.get("strategy", ""))
    t0 = time.perf_counter()
    try:
        with memory:
            metrics, video = _check_output(point_fn(point.config))
        wall = time.perf_counter() - t0
        store.save(point, status="ok", attempts=attempts, wall_time_s=wall, memory=memory.result,
                   metrics=metrics, video=video, weights_hash=weights_hash, sweep=sweep, extra={"code": code})
        return PointResult(point.point_id, "ok", attempts, wall, memory.result["peak_memory_bytes"])
    except Exception as err:  # noqa: BLE001 - one bad point must not stop the sweep
        wall = wall if wall is not None else time.perf_counter() - t0
        error, retryable = f"{type(err).__name__}: {err}", is_retryable(err)
        try:
            store.save(point, status="failed", attempts=attempts, wall_time_s=wall, memory=memory.result,
                       error=error, traceback=traceback.format_exc(), weights_hash=weights_hash, sweep=sweep,
                       extra={"retryable": retryable, "code": code})
        except Exception as save_err:  # noqa: BLE001 - e.g. ENOSPC: report it, lose nothing else
            error += f"; the failure could not be recorded either ({type(save_err).__name__}: {save_err})"
        return PointResult(point.point_id, "failed", attempts, wall, memory.result.get("peak_memory_bytes"), error,
                           retryable)


def _check_output(output) -> tuple[dict, object]:
    if not (isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], dict)):
        raise TypeError(f"point_fn must return (metrics: dict, video or None), got {type(output).__name__}")
    metrics, video = output
    # 0-d tensors / numpy scalars -> Python numbers, so the parquet columns are plain
    metrics = {str(k): (v.item() if getattr(v, "ndim", None) == 0 else v) for k, v in metrics.items()}
    return metrics, video


@dataclasses.dataclass(frozen=True)
class _PointTask:
    """run_point bound to a sweep; picklable, so a Ray executor can ship it to workers."""

    point_fn: PointFn
    store_root: str
    weights_hash: str
    sweep: str
    trace_python_memory: bool

    def __call__(self, job: tuple[Point, int]) -> PointResult:
        point, attempts = job
        return run_point(point, self.point_fn, ResultsStore(self.store_root), attempts, self.weights_hash,
                         self.sweep, self.trace_python_memory)


@dataclasses.dataclass
class SweepReport:
    """What a run_sweep call did and where the sweep stands.

    done: ok points of the grid after this call (= skipped + computed); skipped: ok before
    the call; computed: made ok by this call; failed: still failed after every retry.
    failure_rate: failed / points this call ran (0.0 when it ran none); attempts and
    failed_attempts count every try, retries included.
    """

    name: str
    store_dir: Path
    grid_size: int
    done: int
    skipped: int
    computed: int
    failed: int
    attempts: int
    failed_attempts: int
    failure_rate: float
    baseline_seconds: float | None
    alerts: list[SlowdownAlert]
    failed_ids: list[str]
    table: pd.DataFrame = dataclasses.field(repr=False)
    failures: dict[str, str] = dataclasses.field(default_factory=dict)  # point id -> why it failed / was not retried
    recomputed: dict[str, str] = dataclasses.field(default_factory=dict)  # point id -> what was wrong with it
    stale_ids: list[str] = dataclasses.field(default_factory=list)  # this sweep's points made by other code

    def summary(self) -> str:
        baseline = f"{self.baseline_seconds:#.3g} s" if self.baseline_seconds is not None else "not set"
        lines = [f"sweep {self.name!r}: {self.done}/{self.grid_size} done ({self.skipped} skipped, "
                 f"{self.computed} computed), {self.failed} failed, failure rate {self.failure_rate:.1%}, "
                 f"{self.attempts} attempts, baseline {baseline}, store {self.store_dir}"]
        lines += [f"  ALERT {a}" for a in self.alerts]
        lines += [f"  failed {pid}: {self.failures.get(pid, '?')}" for pid in self.failed_ids]
        lines += [f"  recomputed {pid}: {why}" for pid, why in self.recomputed.items()]
        if self.stale_ids:
            lines.append(f"  {len(self.stale_ids)} stale points of this sweep in the store, made by another vidlab "
                         f"version or other option defaults (kept, not reused): {', '.join(self.stale_ids[:5])}"
                         + (" ..." if len(self.stale_ids) > 5 else ""))
        return "\n".join(lines)


def run_sweep(spec: SweepSpec | str | Path, store_dir: str | Path, point_fn: PointFn | None = None,
              weights_hash: str | None = None, progress: bool = True, executor=None,
              baseline_seconds: float | None = None, baseline_points: int = 3,
              trace_python_memory: bool = False) -> SweepReport:
    """Run the missing points of `spec`'s grid into the store at `store_dir`; resumable.

    point_fn: config -> (metrics, video or None); default `generate_point` (vidlab.generate + video_metrics).
    weights_hash: part of every point id; default: the model's, read through the backend when
        point_fn is the default, else "" (ids then depend on the config alone).
    executor: "local" (default), "ray", or an object with `map(fn, items)` (see executors.py).
    baseline_seconds / baseline_points: the slowdown alert's baseline (see monitor.py).
    trace_python_memory: also record the tracemalloc peak of Python allocations (slower).
    """
    # 1. the grid, every point validated before any work starts
    if not isinstance(spec, SweepSpec):
        spec = load_sweep_spec(spec)
    if point_fn is None:
        check_strategy(spec.strategy)
    if weights_hash is None:
        weights_hash = default_weights_hash(spec.model) if point_fn is None else ""
    points = expand_grid(spec, weights_hash)
    executor = get_executor(executor)

    # 2. one sweep at a time per store (a killed one releases the lock with its process)
    store = ResultsStore(store_dir)
    with store.exclusive():
        return _run_grid(spec, points, store, point_fn or generate_point, weights_hash, progress, executor,
                         SlowdownMonitor(baseline_seconds, baseline_points), trace_python_memory)


def _run_grid(spec: SweepSpec, points: list[Point], store: ResultsStore, point_fn: PointFn, weights_hash: str,
              progress: bool, executor, monitor: SlowdownMonitor, trace_python_memory: bool) -> SweepReport:
    """run_sweep's steps 3-5, with the store's lock held."""
    # 3. leftovers of a killed run removed; sound done points skipped, corrupt or malformed ones redone;
    #    points out of attempts, or failed the same way every time, not tried again
    store.clean_temp()
    store.write_spec(spec)
    manifests, recomputed, failures = {}, {}, {}
    for p in points:
        manifest, problem = store.verify(p.point_id)
        if problem is not None:
            warnings.warn(f"point {p.point_id} of sweep {spec.name!r}: {problem}; computing it again", stacklevel=3)
            recomputed[p.point_id] = problem
            manifest = None
        manifests[p.point_id] = manifest
    done_before = [m for m in manifests.values() if m is not None and m["status"] == "ok"]
    attempts = {p.point_id: int((manifests[p.point_id] or {}).get("attempts", 0)) for p in points}
    todo, given_up = [], []
    for p in points:
        m = manifests[p.point_id]
        if m is not None and m["status"] == "ok":
            continue
        why = None if m is None else _no_more_tries(m.get("error"), m.get("retryable") is not False,
                                                     attempts[p.point_id], spec.max_attempts)
        if why is not None:
            failures[p.point_id] = why
            given_up.append(p)
        else:
            todo.append(p)

    # 4. the slowdown monitor keeps the baseline set by earlier runs of this sweep
    monitor.warm_up([m.get("wall_time_s") or 0.0 for m in sorted(done_before, key=lambda m: m.get("finished_at", ""))])

    # 5. one pass over the missing points, then the failed ones again, alone, up to max_retries times
    task = _PointTask(point_fn, str(store.root), weights_hash, spec.name, trace_python_memory)
    failed, computed, tries, failed_tries = todo, 0, 0, 0
    bar = tqdm(total=len(todo), desc=f"sweep {spec.name}", unit="point", disable=not progress)
    final_failed = []
    for pass_index in range(1 + spec.max_retries):
        if not failed:
            break
        jobs = [(p, attempts[p.point_id] + 1) for p in failed]
        still_failed = []
        for (point, attempt), outcome in executor.map(task, jobs):
            result = _as_result(outcome, point, attempt, store, weights_hash, spec.name)
            attempts[point.point_id], tries = attempt, tries + 1
            if result.status == "ok":
                computed += 1
                failures.pop(point.point_id, None)
                bar.update(1)
                alert = monitor.observe(point.point_id, result.wall_time_s)
                if alert is not None:
                    bar.write(f"ALERT {alert}")
                continue
            failed_tries += 1
            why = _no_more_tries(result.error, result.retryable, attempt, spec.max_attempts)
            failures[point.point_id] = why or result.error
            (final_failed if why is not None else still_failed).append(point)
            bar.set_postfix(failed=len(still_failed) + len(final_failed), retry_pass=pass_index)
        failed = sorted(still_failed, key=lambda p: p.index)
    failed = sorted(failed + final_failed + given_up, key=lambda p: p.index)
    bar.update(len(failed) - len(given_up))  # points given up on are finished too
    bar.close()

    grid_ids = {p.point_id for p in points}
    stale = [m["point_id"] for m in store.manifests() if m.get("sweep") == spec.name and m["point_id"] not in grid_ids]
    ran = computed + len(failed) - len(given_up)
    return SweepReport(
        name=spec.name, store_dir=store.root, grid_size=len(points), done=len(done_before) + computed,
        skipped=len(done_before), computed=computed, failed=len(failed), attempts=tries, failed_attempts=failed_tries,
        failure_rate=len(failed) / ran if ran else 0.0, baseline_seconds=monitor.baseline_seconds,
        alerts=list(monitor.alerts), failed_ids=[p.point_id for p in failed],
        table=store.table(point_ids=[p.point_id for p in points]), failures=failures, recomputed=recomputed,
        stale_ids=stale)


def _no_more_tries(error: str | None, retryable: bool, attempts: int, max_attempts: int) -> str | None:
    """Why a failed point is not tried again (in this run or a later one), or None if it may be."""
    if not retryable:
        return f"not retried, the same every time: {error}"
    if attempts >= max_attempts:
        return f"gave up after {attempts} attempts (max_attempts): {error}"
    return None


def _as_result(outcome, point: Point, attempt: int, store: ResultsStore, weights_hash: str, sweep: str):
    """The executor's outcome as a PointResult; an executor failure (a dead worker) is recorded here."""
    if isinstance(outcome, PointResult):
        return outcome
    error = f"executor: {type(outcome).__name__}: {outcome}"  # a dead worker: worth another try
    try:
        store.save(point, status="failed", attempts=attempt, wall_time_s=0.0, memory={}, error=error,
                   traceback="".join(traceback.format_exception(outcome)) if isinstance(outcome, BaseException)
                   else None, weights_hash=weights_hash, sweep=sweep, extra={"retryable": True})
    except Exception as save_err:  # noqa: BLE001
        error += f"; the failure could not be recorded either ({type(save_err).__name__}: {save_err})"
    return PointResult(point.point_id, "failed", attempt, 0.0, None, error, True)
