"""The `vidlab` command: schema, generate, replay, demo, sweep, summarize, rerun.

A user's mistake (a bad field, file, option, model, device: an `errors.UserError`) is one line on
stderr and exit status 2, before any model loads where it can be told then; `--debug` shows the
traceback. A full disk is one line too. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._version import __version__
from .backends.presets import DTYPES, FAMILIES, PART_HELP, PARTS  # torch-free: --help stays quick
from .errors import UserInputError, one_line


def _parse_option(text: str) -> tuple[str, object]:
    """'key=value' with value read as JSON when it parses, else as a string."""
    if "=" not in text:
        raise UserInputError("-o", text, "is not key=value (the value read as JSON where it parses, e.g. "
                                         "-o strength=0.6)")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return key, value
    except ValueError as err:  # an integer past Python's digit limit
        raise UserInputError(f"-o {key}", value, f"is not a readable value ({err})") from None


def _read_request(path: str):
    from .config import parse_request
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserInputError("request", path, "does not exist: give a request JSON file") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as err:
        raise UserInputError("request", path, f"cannot be read as a JSON file ({type(err).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserInputError("request", path, f"is not valid JSON ({err})") from None
    except (RecursionError, ValueError) as err:  # nested past the recursion limit; an int past the digit limit
        raise UserInputError("request", path, f"is not a readable JSON file ({type(err).__name__}: "
                                              f"{' '.join(str(err).split())[:120]})") from None
    return parse_request(data)


def cmd_schema(args) -> int:
    from .config import request_schema
    print(json.dumps(request_schema(), indent=2))
    return 0


def _budget(text: str | None) -> int | None:
    """--budget: frames x pixels, an integer (underscores allowed) or 'none'; unset: the default."""
    from .config import DEFAULT_BUDGET_PIXEL_FRAMES
    if text is None:
        return DEFAULT_BUDGET_PIXEL_FRAMES
    if text.lower() == "none":
        return None
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise UserInputError("--budget", text, "is not a positive integer (frames x pixels) or 'none'")
    return value


def _backend_spec(args):
    """The BackendSpec the flags name (one error naming every bad field)."""
    from .backends.spec import BackendSpec
    from .config import RequestError, parse_request
    fields = {"model": args.model, "family": args.family, "device": args.device, "dtype": args.dtype,
              **{p: getattr(args, p) for p in PARTS}}
    try:
        return parse_request({k: v for k, v in fields.items() if v is not None}, BackendSpec)
    except RequestError as err:
        raise RequestError("the model flags", [(f"--{f.replace('_', '-')}", v, m) for f, v, m in err.problems]) \
            from None


def _write_video(out: Path, make):
    """make() -> Video, saved as out/video.mp4 + video.json under the folder's lock; returns the Video."""
    from .io.atomic import clean_stale_temporaries
    from .io.lock import folder_lock
    with folder_lock(out, "vidlab generate"):
        clean_stale_temporaries(out)
        video = make()
        path = video.save(out / "video.mp4")
    print(f"wrote {path} and {path.with_suffix('.json')} ({video.num_frames} frames at {video.fps} fps, "
          f"{video.record['timing']['seconds']:.1f} s)")
    return video


def cmd_generate(args) -> int:
    from ._quiet import loading_bars
    from .generate import check_inputs, generate

    request = _read_request(args.request)
    options = dict(_parse_option(o) for o in args.option)
    backend = _backend_spec(args)
    budget = _budget(args.budget)
    check_inputs(request, args.strategy, backend, options, budget)  # before any model loads
    if args.check:
        print(f"valid: {request.num_frames} frames at {request.width}x{request.height}, strategy {args.strategy!r}, "
              f"model {args.model!r}")
        return 0
    loading_bars(False)
    _write_video(Path(args.out), lambda: generate(request, strategy=args.strategy, model=backend.load(),
                                                  budget=budget, **options))
    return 0


def cmd_replay(args) -> int:
    """Make a manifest's video again; say whether its frames match the recorded ones."""
    from ._quiet import loading_bars
    from .backends.spec import BackendSpec
    from .errors import read_json_config
    from .generate import replay
    if Path(args.manifest).suffix != ".json" or not Path(args.manifest).is_file():
        raise UserInputError("manifest", args.manifest, "is not a video's manifest: give the existing .json file "
                                                        "beside its MP4")
    record = read_json_config(Path(args.manifest))
    if not {"request", "strategy", "options", "backend"} <= set(record):
        raise UserInputError("manifest", args.manifest, "has no generation record (request, strategy, options, "
                                                        "backend): not written by vidlab generate")
    BackendSpec.from_record(record["backend"], device=args.device, dtype=args.dtype).check()  # before loading
    loading_bars(False)
    video = _write_video(Path(args.out), lambda: replay(record, device=args.device, dtype=args.dtype))
    before = record.get("video", {}).get("frames_sha256")
    if before is not None:
        from .video import frames_digest
        hashes = (record["backend"].get("weights_hash"), video.record["backend"]["weights_hash"])
        print("frames identical to the recorded ones" if frames_digest(video.frames) == before else
              "frames differ from the recorded ones: " + ("the weights changed (hash "
              f"{hashes[0]} then, {hashes[1]} now)" if hashes[0] != hashes[1] else
              "same weights; another device, dtype or library version?"))
    return 0


def cmd_demo(args) -> int:
    from .quickstart import run_quickstart
    paths = run_quickstart(args.out, prompt=args.prompt, strategy=args.strategy)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_summarize(args) -> int:
    from .sweeps.summary import write_summary
    if not (Path(args.store) / "sweep.json").exists():
        raise UserInputError("store", args.store, "is not a sweep's results folder (no sweep.json in it)")
    for name, path in write_summary(args.store).items():
        print(f"{name}: {path}")
    return 0


def cmd_sweep(args) -> int:
    from .sweeps import sweep_main
    return sweep_main(args.rest) or 0


def cmd_rerun(args) -> int:
    from .sweeps import rerun_main
    return rerun_main(args.rest) or 0


def _backend_flags(parser) -> None:
    """--family, --device, --dtype and one flag per model part (backends.presets.PARTS)."""
    parser.add_argument("--family", default=None, choices=FAMILIES,
                        help="the pipeline family of a folder or hub id (default: sd)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: the best there is)")
    parser.add_argument("--dtype", default=None, choices=DTYPES, help="default: bfloat16 on CUDA, float32 on CPU")
    for part in PARTS:
        parser.add_argument(f"--{part.replace('_', '-')}", default=None, help=PART_HELP[part])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vidlab", description="diffusion text-to-video research workbench")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error too")
    parser.add_argument("--version", action="version", version=f"vidlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the JSON Schema of a generation request").set_defaults(fn=cmd_schema)
    g = sub.add_parser("generate", help="generate a video from a request JSON file")
    g.add_argument("request")
    g.add_argument("--out", required=True)
    g.add_argument("--strategy", default="frame_chain")
    g.add_argument("--model", default="shapes-tiny", help="a preset, a local diffusers folder or a hub id")
    _backend_flags(g)
    g.add_argument("--budget", default=None, help="the most frames x pixels the request may ask for, checked "
                                                  "before anything loads ('none': no limit; default 1080p x 480 "
                                                  "frames)")
    g.add_argument("-o", "--option", action="append", default=[], help="strategy option key=value (JSON value)")
    g.add_argument("--check", action="store_true", help="check the request, options, model and device; run nothing")
    g.set_defaults(fn=cmd_generate)
    r = sub.add_parser("replay", help="make a video again from its manifest (video.json)")
    r.add_argument("manifest")
    r.add_argument("--out", required=True)
    r.add_argument("--device", default=None, help="run on another device than the recorded one")
    r.add_argument("--dtype", default=None, choices=DTYPES, help="run in another dtype than the recorded one")
    r.set_defaults(fn=cmd_replay)
    d = sub.add_parser("demo", help="the quickstart on the offline zoo: MP4, metrics table and plot")
    d.add_argument("--out", default="results/demo")
    d.add_argument("--prompt", default=None)
    d.add_argument("--strategy", default="frame_chain")
    d.set_defaults(fn=cmd_demo)
    s = sub.add_parser("summarize", help="write summary.csv and summary.png of a sweep's results store")
    s.add_argument("store")
    s.set_defaults(fn=cmd_summarize)
    for name, fn, text in (("sweep", cmd_sweep, "run a sweep spec (YAML); resumable"),
                           ("rerun", cmd_rerun, "rerun a notebook with strictly checked parameters")):
        s = sub.add_parser(name, help=text, add_help=False)  # its own parser reads the rest, -h included
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(fn=fn)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in ("sweep", "rerun"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.rest = extra + args.rest  # options before the first positional (`vidlab sweep -h`) are its own
    return run_command(args.fn, args, args.command, args.debug)


def run_command(fn, args, command: str, debug: bool = False) -> int:
    """fn(args), with every user error (`errors.is_user_error`: a full disk and an input nested past the
    recursion limit included) as one line on stderr and exit status 2."""
    from .errors import is_user_error
    try:
        return fn(args)
    except Exception as err:  # noqa: BLE001 - anything not a user's mistake is re-raised with its traceback
        if debug or not is_user_error(err):
            raise
        print(f"vidlab {command}: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
