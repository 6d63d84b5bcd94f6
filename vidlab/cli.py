"""The `vidlab` command: schema, generate, demo, sweep, rerun."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse_option(text: str) -> tuple[str, object]:
    """'key=value' with value read as JSON when it parses, else as a string."""
    if "=" not in text:
        raise SystemExit(f"option {text!r} must look like key=value")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def cmd_schema(args) -> int:
    from .config import request_schema
    print(json.dumps(request_schema(), indent=2))
    return 0


def cmd_generate(args) -> int:
    from .config import RequestError, parse_request
    from .generate import generate

    try:
        request = parse_request(Path(args.request).read_text())
    except RequestError as err:
        print(err, file=sys.stderr)
        return 2
    options = dict(_parse_option(o) for o in args.option)
    video = generate(request, strategy=args.strategy, model=args.model, device=args.device, **options)
    path = video.save(Path(args.out) / "video.mp4")
    print(f"wrote {path} and {path.with_suffix('.json')} ({video.num_frames} frames at {video.fps} fps, "
          f"{video.record['timing']['seconds']:.1f} s)")
    return 0


def cmd_demo(args) -> int:
    from .quickstart import run_quickstart
    paths = run_quickstart(args.out, prompt=args.prompt, strategy=args.strategy)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_sweep(args) -> int:
    from .experiments import sweep_main
    return sweep_main(args.rest) or 0


def cmd_rerun(args) -> int:
    from .experiments import rerun_main
    return rerun_main(args.rest) or 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vidlab", description="diffusion text-to-video research workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the JSON Schema of a generation request").set_defaults(fn=cmd_schema)
    g = sub.add_parser("generate", help="generate a video from a request JSON file")
    g.add_argument("request")
    g.add_argument("--out", required=True)
    g.add_argument("--strategy", default="frame_chain")
    g.add_argument("--model", default="shapes-tiny")
    g.add_argument("--device", default=None)
    g.add_argument("-o", "--option", action="append", default=[], help="strategy option key=value (JSON value)")
    g.set_defaults(fn=cmd_generate)
    d = sub.add_parser("demo", help="the quickstart on the offline zoo: MP4, metrics table and plot")
    d.add_argument("--out", default="results/demo")
    d.add_argument("--prompt", default=None)
    d.add_argument("--strategy", default="frame_chain")
    d.set_defaults(fn=cmd_demo)
    for name, fn, text in (("sweep", cmd_sweep, "run a sweep spec (YAML); resumable"),
                           ("rerun", cmd_rerun, "rerun a notebook with strictly checked parameters")):
        s = sub.add_parser(name, help=text, add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
