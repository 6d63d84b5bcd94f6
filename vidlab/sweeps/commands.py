"""The `vidlab sweep` and `vidlab rerun` commands: argparse front ends the top-level CLI dispatches to.

    vidlab sweep SPEC.yaml --store DIR [--executor local|ray] [--weights-hash H] [--baseline-seconds S]
    vidlab rerun NOTEBOOK -p name value [-p name value ...] [--out DIR] [--cwd DIR] [--list]

Exit status: 0 on success; 1 when points failed (sweep) or a cell failed (rerun);
2 for a bad spec or bad parameters (nothing ran).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import RequestError
from ..errors import one_line
from .rerun import ParameterError, coerce_cli_params, declared_parameters, rerun_notebook
from .spec import MAX_POINTS, check_grid, load_sweep_spec
from .sweep import run_sweep


def _refused(parser, err: BaseException) -> int:
    """A user's mistake as the one line `vidlab <command>: ...` on stderr; exit status 2."""
    print(f"vidlab {parser.prog.split()[-1]}: {one_line(err)}", file=sys.stderr)
    return 2


def sweep_main(argv: list[str] | None = None) -> int:
    """`vidlab sweep`: run (or resume) a sweep spec into a results store; prints the report."""
    parser = argparse.ArgumentParser(prog="vidlab sweep", description="run a sweep spec (YAML); resumable")
    parser.add_argument("spec", help="the sweep spec YAML")
    parser.add_argument("--store", default=None, help="results folder (default: results/sweeps/<name>)")
    parser.add_argument("--executor", default="local", choices=["local", "process", "ray"],
                        help="where points run: this process, local worker processes, or Ray")
    parser.add_argument("--ray-address", default=None,
                        help="with --executor ray: an existing cluster ('auto', 'ray://head:10001'); default a local one")
    parser.add_argument("--batch-seeds", type=int, default=16,
                        help="points differing only in seed made in one batched call, at most this many (1: off)")
    parser.add_argument("--weights-hash", default=None, help="skip loading the model to read its weights hash")
    parser.add_argument("--baseline-seconds", type=float, default=None,
                        help="the slowdown alert's baseline (default: median of the first 3 ok points)")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS,
                        help=f"the largest grid run (default {MAX_POINTS:,}); a larger spec is refused before it starts")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars, model loading's included")
    parser.add_argument("--check", action="store_true",
                        help="check the spec and its grid (no model loads, nothing runs) and print the grid's size")
    args = parser.parse_args(argv)
    try:
        spec = load_sweep_spec(args.spec)
    except (RequestError, OSError) as err:
        return _refused(parser, err)
    if args.check:
        try:
            size = check_grid(spec, args.max_points)
            spec.backend_spec().check()
        except ValueError as err:
            return _refused(parser, err)
        print(f"sweep {spec.name!r}: {size:,} points, every value valid; model {spec.model!r}")
        return 0
    if args.no_progress:
        from .._quiet import loading_bars
        loading_bars(False)
    store = args.store or Path("results") / "sweeps" / spec.name
    executor = args.executor
    try:
        if args.ray_address is not None:
            if executor != "ray":
                raise ValueError(f"--ray-address={args.ray_address!r} needs --executor ray, not {executor!r}")
            from .executors import RayExecutor
            executor = RayExecutor(address=args.ray_address)
        report = run_sweep(spec, store, weights_hash=args.weights_hash, progress=not args.no_progress,
                           executor=executor, baseline_seconds=args.baseline_seconds, batch_seeds=args.batch_seeds,
                           max_points=args.max_points)
    except (ValueError, RuntimeError, ImportError) as err:  # bad value, strategy or model; a locked store; no ray
        return _refused(parser, err)
    finally:
        if not isinstance(executor, str):
            executor.close()
    print(report.summary())
    return 1 if report.failed else 0


def rerun_main(argv: list[str] | None = None) -> int:
    """`vidlab rerun`: execute a notebook with `-p name value` parameters checked against its declarations."""
    parser = argparse.ArgumentParser(prog="vidlab rerun", description="rerun a notebook with strict parameters")
    parser.add_argument("notebook")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter; the value is converted to the declared type (JSON for lists)")
    parser.add_argument("--out", default="results/notebooks", help="folder of the executed copy")
    parser.add_argument("--cwd", default=None, help="kernel working directory (default: the notebook's folder)")
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--list", action="store_true", help="print the declared parameters and exit")
    args = parser.parse_args(argv)
    try:
        if args.list:
            print(json.dumps(declared_parameters(args.notebook), indent=2, default=str))
            return 0
        params = coerce_cli_params(args.notebook, [tuple(p) for p in args.parameter])
    except (ParameterError, OSError) as err:
        return _refused(parser, err)
    try:
        path = rerun_notebook(args.notebook, params, out_dir=args.out, cwd=args.cwd, kernel_name=args.kernel)
    except ParameterError as err:
        return _refused(parser, err)
    except Exception as err:  # noqa: BLE001 - a failing cell: papermill has written the copy with the error
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"executed {path} (parameters {json.dumps(params)}; record {path.with_suffix('.params.json')})")
    return 0
