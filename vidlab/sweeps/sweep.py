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
import errno
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm.auto import tqdm

from .batching import BatchFn, generate_points, run_batch, seed_batches
from .executors import get_executor
from .memory import PeakMemory
from .monitor import SlowdownAlert, SlowdownMonitor, compare_with_last_run, points_table
from .points import generate_point
from .spec import MAX_POINTS, Point, SweepSpec, check_grid, code_identity, expand_grid, load_sweep_spec
from .store import DiskFullError, ResultsStore

PointFn = Callable[[dict], tuple]  # config -> (metrics: dict[str, float], video or None)


def default_weights_hash(spec: SweepSpec) -> str:
    """The weights hash `generate` records for the spec's model (loads it once into the backend LRU cache)."""
    return spec.backend_spec().load().weights_hash


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
    batch_size: int = 1     # points made by the same batched call (see batching.py)


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
    memory = PeakMemory(trace_python_memory)
    t0 = time.perf_counter()
    try:
        with memory:
            output = point_fn(point.config)
    except Exception as err:  # noqa: BLE001 - one bad point must not stop the sweep
        output = err
    return record_point(point, output, store, attempts, time.perf_counter() - t0, memory.result, weights_hash,
                        sweep)


def record_point(point: Point, output, store: ResultsStore, attempts: int, wall: float, memory: dict,
                 weights_hash: str = "", sweep: str = "", batch_size: int = 1) -> PointResult:
    """Write what an attempt gave: `(metrics, video)` -> an ok point; an exception (or an output
    of the wrong form, or an error while writing) -> a failed point with its traceback."""
    code = code_identity(point.config.get("strategy", ""))
    extra = {"code": code, "batch_size": batch_size}
    try:
        if isinstance(output, BaseException):
            raise output
        metrics, video = _check_output(output)
        store.save(point, status="ok", attempts=attempts, wall_time_s=wall, memory=memory, metrics=metrics,
                   video=video, weights_hash=weights_hash, sweep=sweep, extra=extra)
        return PointResult(point.point_id, "ok", attempts, wall, memory.get("peak_memory_bytes"), batch_size=batch_size)
    except Exception as err:  # noqa: BLE001 - one bad point must not stop the sweep
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise  # a full disk is not the point's fault: the sweep stops (run_sweep says so), nothing is recorded
        error, retryable = f"{type(err).__name__}: {err}", is_retryable(err)
        try:
            store.save(point, status="failed", attempts=attempts, wall_time_s=wall, memory=memory,
                       error=error, traceback="".join(traceback.format_exception(err)), weights_hash=weights_hash,
                       sweep=sweep, extra={**extra, "retryable": retryable})
        except Exception as save_err:  # noqa: BLE001 - e.g. ENOSPC: report it, lose nothing else
            error += f"; the failure could not be recorded either ({type(save_err).__name__}: {save_err})"
        return PointResult(point.point_id, "failed", attempts, wall, memory.get("peak_memory_bytes"), error,
                           retryable, batch_size)


def _check_output(output) -> tuple[dict, object]:
    if not (isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], dict)):
        raise TypeError(f"point_fn must return (metrics: dict, video or None), got {type(output).__name__}")
    metrics, video = output
    # 0-d tensors / numpy scalars -> Python numbers, so the parquet columns are plain
    metrics = {str(k): (v.item() if getattr(v, "ndim", None) == 0 else v) for k, v in metrics.items()}
    return metrics, video


@dataclasses.dataclass(frozen=True)
class _PointTask:
    """run_point bound to a sweep, over a batch of jobs [(point, attempt), ...]; picklable, so an
    executor can ship it to worker processes."""

    point_fn: PointFn
    batch_fn: BatchFn | None
    store_root: str
    weights_hash: str
    sweep: str
    trace_python_memory: bool

    def __call__(self, jobs: list[tuple[Point, int]]) -> list[PointResult]:
        store = ResultsStore(self.store_root)

        def alone(point, attempts):
            return run_point(point, self.point_fn, store, attempts, self.weights_hash, self.sweep,
                             self.trace_python_memory)

        def record(point, attempts, output, wall, memory, batch_size):
            return record_point(point, output, store, attempts, wall, memory, self.weights_hash, self.sweep,
                                batch_size)

        if len(jobs) == 1 or self.batch_fn is None:
            return [alone(point, attempts) for point, attempts in jobs]
        return run_batch(jobs, self.batch_fn, alone, record, self.trace_python_memory)


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
    # one row a point this call ran: point_id, index, status, attempts, wall_time_s, peak_memory_bytes,
    # batch_size, then (compare_with_last_run) last_run_wall_time_s, time_ratio, regression
    points: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame, repr=False)
    regressions: list[str] = dataclasses.field(default_factory=list)  # point ids flagged `regression`
    last_run: dict | None = None  # the previous run of this sweep, as the store's history recorded it

    def summary(self) -> str:
        baseline = f"{self.baseline_seconds:#.3g} s" if self.baseline_seconds is not None else "not set"
        lines = [f"sweep {self.name!r}: {self.done}/{self.grid_size} done ({self.skipped} skipped, "
                 f"{self.computed} computed), {self.failed} failed, failure rate {self.failure_rate:.1%}, "
                 f"{self.attempts} attempts, baseline {baseline}, store {self.store_dir}"]
        lines += [f"  ALERT {a}" for a in self.alerts]
        if self.regressions:
            lines.append(f"  REGRESSION: {len(self.regressions)} points slower than the last run allows "
                         f"(see .points): {', '.join(self.regressions[:5])}" + (" ..." if len(self.regressions) > 5 else ""))
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
              trace_python_memory: bool = False, batch_seeds: int = 16, batch_fn: BatchFn | None = None,
              regression_ratio: float = 1.5, max_points: int = MAX_POINTS) -> SweepReport:
    """Run the missing points of `spec`'s grid into the store at `store_dir`; resumable.

    point_fn: config -> (metrics, video or None); default `generate_point` (vidlab.generate + video_metrics).
    batch_seeds: at most this many points that differ only in seed run as one batched call
        (`batch_fn`: configs -> [(metrics, video), ...]; default `generate_points` when point_fn is
        the default, else none: each point alone). 1: every point alone. Frames are bit-identical.
    weights_hash: part of every point id; default: the model's, read through the backend when
        point_fn is the default, else "" (ids then depend on the config alone).
    executor: "local" (default), "process", "ray", or an executor object (see executors.py; one made
        from a name is closed at the end, one passed in is left running for the next sweep).
    baseline_seconds / baseline_points: the slowdown alert's baseline (see monitor.py).
    trace_python_memory: also record the tracemalloc peak of Python allocations (slower).
    regression_ratio: a point is flagged `regression` when its time is over this ratio of the last
        run's (see `monitor.compare_with_last_run`).
    max_points: the largest grid run (`spec.check_grid`); the grid is checked before any model loads,
        with the strategy's option model when point_fn is the default.
    """
    # 1. the grid, every point validated before any work starts
    if not isinstance(spec, SweepSpec):
        spec = load_sweep_spec(spec)
    if point_fn is None:
        from ..strategies import check_strategy  # the strategies (torch, diffusers) load only when used
        check_strategy(spec.strategy)
        spec.backend_spec().check()  # the model's folders, hub ids and device, before anything loads
        batch_fn = generate_points if batch_fn is None else batch_fn
    if isinstance(batch_seeds, bool) or not isinstance(batch_seeds, int) or batch_seeds < 1:
        raise ValueError(f"batch_seeds={batch_seeds!r} must be an integer >= 1 (1: no batching)")
    check_grid(spec, max_points, strategy_options=point_fn is None)  # before the model loads for its hash
    if weights_hash is None:
        weights_hash = default_weights_hash(spec) if point_fn is None else ""
    points = expand_grid(spec, weights_hash, max_points, strategy_options=point_fn is None)
    owned = executor is None or isinstance(executor, str)  # made here: its workers end with the sweep
    executor = get_executor(executor)

    # 2. one sweep at a time per store (a killed one releases the lock with its process)
    store = ResultsStore(store_dir)
    task = _PointTask(point_fn or generate_point, batch_fn if batch_seeds > 1 else None, str(store.root),
                      weights_hash, spec.name, trace_python_memory)
    try:
        with store.exclusive():
            report = _run_grid(spec, points, store, task, batch_seeds, progress, executor,
                               SlowdownMonitor(baseline_seconds, baseline_points))
            compare_with_last_run(report, store.root, regression_ratio, executor=getattr(executor, "name", "custom"))
            _summarize(store.root)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        done = sum(1 for p in points if (store.verify(p.point_id)[0] or {}).get("status") == "ok")
        raise DiskFullError(f"no space left on the device of the store {store.root} ({err.filename or 'a write'}): "
                            f"{done} of {len(points)} points are done and kept there; free space and rerun the "
                            f"same command to resume") from err
    finally:
        if owned:
            executor.close()
    return report


def _summarize(store_root: Path) -> None:
    """summary.csv and summary.png of the store (`summary.write_summary`); a figure that cannot be drawn is
    a warning, never a lost sweep (a full disk still stops it, as every write does)."""
    from .summary import write_summary
    try:
        write_summary(store_root)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - the points are kept whatever the summary does
        warnings.warn(f"the summary of {store_root} could not be written ({type(err).__name__}: {err}); "
                      f"`vidlab summarize {store_root}` tries again", stacklevel=3)


def _run_grid(spec: SweepSpec, points: list[Point], store: ResultsStore, task: _PointTask, batch_seeds: int,
              progress: bool, executor, monitor: SlowdownMonitor) -> SweepReport:
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
    #    (the first pass batches points that differ only in seed; a retry runs each point alone)
    failed, computed, tries, failed_tries = todo, 0, 0, 0
    results: dict[str, PointResult] = {}
    bar = tqdm(total=len(todo), desc=f"sweep {spec.name}", unit="point", disable=not progress)
    bar.set_postfix(done=0, failed=0, skipped=len(done_before))
    final_failed = []
    for pass_index in range(1 + spec.max_retries):
        if not failed:
            break
        jobs = [(p, attempts[p.point_id] + 1) for p in failed]
        still_failed = []
        for batch, outcome in executor.map(task, seed_batches(jobs, batch_seeds if pass_index == 0 and task.batch_fn else 1)):
            outcomes = outcome if isinstance(outcome, list) else [outcome] * len(batch)
            for (point, attempt), one in zip(batch, outcomes):
                result = results[point.point_id] = _as_result(one, point, attempt, store, task.weights_hash,
                                                              spec.name)
                attempts[point.point_id], tries = attempt, tries + 1
                if result.status == "ok":
                    computed += 1
                    failures.pop(point.point_id, None)
                    bar.update(1)
                    # a point redone after tampering is no sign of a slower machine: no alert from it
                    alert = None if point.point_id in recomputed else monitor.observe(point.point_id,
                                                                                        result.wall_time_s)
                    if alert is not None:
                        bar.write(f"ALERT {alert}")
                else:
                    failed_tries += 1
                    why = _no_more_tries(result.error, result.retryable, attempt, spec.max_attempts)
                    failures[point.point_id] = why or result.error
                    (final_failed if why is not None else still_failed).append(point)
                    if why is not None:
                        bar.update(1)  # finished: failed for good
            bar.set_postfix(done=computed, failed=len(still_failed) + len(final_failed), skipped=len(done_before),
                            retry_pass=pass_index)
        failed = sorted(still_failed, key=lambda p: p.index)
    failed = sorted(failed + final_failed + given_up, key=lambda p: p.index)
    bar.update(len(failed) - len(given_up) - len(final_failed))  # failed after the last retry: finished too
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
        stale_ids=stale, points=points_table(points, results))


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
