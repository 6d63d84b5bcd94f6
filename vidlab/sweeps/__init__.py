"""Sweeps: specs and their grid, the results store, resumable runs, their tables and plots, strict notebook reruns.

- `spec.py`      SweepSpec, load_sweep_spec, expand_grid -> content-addressed Points
- `store.py`     ResultsStore: one folder per point, atomic writes, manifest last; `.table()`
- `sweep.py`     run_sweep -> SweepReport (skip done, catch + retry failures, wall time, peak memory)
- `monitor.py`   SlowdownMonitor: > 20% slower than baseline three times in a row
- `memory.py`    PeakMemory: how a point's peak memory is measured
- `executors.py` LocalExecutor, ProcessExecutor, RayExecutor (an actor a worker)
- `batching.py`  seed_batches, generate_points: points that differ only in seed, one batched call
- `rerun.py`     declared_parameters, check_parameters, coerce_cli_value, rerun_notebook (papermill)
- `commands.py`  sweep_main, rerun_main: the `vidlab sweep` / `vidlab rerun` commands
- `studies.py`, `analysis.py`, `plots.py`, `summary.py`: the notebooks' studies, their tables, their
  figures, and every sweep's summary.csv / summary.png
"""
from .commands import rerun_main, sweep_main
from .executors import EXECUTORS, LocalExecutor, ProcessExecutor, RayExecutor, get_executor
from .memory import PeakMemory
from .monitor import SlowdownAlert, SlowdownMonitor
from .rerun import (ParameterError, check_parameters, coerce_cli_params, coerce_cli_value, declared_parameters,
                    rerun_notebook)
from .spec import Point, SweepSpec, canonical_json, expand_grid, load_sweep_spec, point_id
from .store import ResultsStore
from .sweep import PointResult, SweepReport, default_weights_hash, generate_point, run_point, run_sweep

__all__ = ["SweepSpec", "Point", "load_sweep_spec", "expand_grid", "point_id", "canonical_json",
           "ResultsStore", "run_sweep", "run_point", "generate_point", "default_weights_hash", "SweepReport",
           "PointResult", "SlowdownMonitor", "SlowdownAlert", "PeakMemory", "LocalExecutor", "ProcessExecutor", "RayExecutor",
           "EXECUTORS", "get_executor", "declared_parameters", "check_parameters", "coerce_cli_value",
           "coerce_cli_params", "rerun_notebook", "ParameterError", "sweep_main", "rerun_main"]
