"""Sweep specs: a base request, fixed strategy options and axes; the grid of content-addressed points.

A spec in YAML (read with `yaml.safe_load` only):

    name: control-strength
    base_request: {prompt: "a red circle in the center on a white background", duration: 1, fps: 16}
    strategy: frame_chain
    options: {num_inference_steps: 4}
    axes:
      seed: [0, 1, 2]
      options.controlnet_conditioning_scale: [0.5, 1.0, 1.5]
    max_retries: 1

An axis name is a `GenerationRequest` field (`seed`, `temporal_consistency`, ...) or
`options.<name>` for a strategy option. Every point is validated with the same typed
model as a single request, before any work starts.

>>> spec = SweepSpec(name="demo", base_request={"prompt": "a red circle"}, strategy="frame_chain",
...                  axes={"seed": [0, 1], "options.strength": [0.3, 0.6]})
>>> points = expand_grid(spec, weights_hash="abc")
>>> [p.axis_values for p in points][:2]
[{'seed': 0, 'options.strength': 0.3}, {'seed': 0, 'options.strength': 0.6}]
>>> len(points), len(points[0].point_id)
(4, 16)
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator

from ..config import GenerationRequest, RequestError, Strict, parse_request

OPTION_PREFIX = "options."
ID_LENGTH = 16  # hex chars of the sha256 kept in a point id
# a sweep's name names its folder: no separator, no leading dot, so never '..' or an absolute path
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class SweepSpec(Strict):
    """A named grid of generations: `base_request` with each combination of `axes` applied."""

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN,
                      description="the sweep's name: a slug (letters, digits, '.', '_', '-'), "
                                  "also its folder name under results/sweeps/")
    base_request: GenerationRequest = Field(description="the request every point starts from")
    strategy: str = Field(min_length=1, description="a key of vidlab.strategies.STRATEGIES")
    model: str = Field("shapes-tiny", min_length=1, description="a preset name, local folder or hub id")
    options: dict[str, Any] = Field(default_factory=dict, description="strategy options fixed for every point")
    axes: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="axis name -> values; a request field or 'options.<name>'")
    max_retries: int = Field(1, ge=0, le=100, description="extra attempts of a failed point in one run, each alone")
    max_attempts: int = Field(3, ge=1, le=100, description="attempts of a point over every run of the sweep; "
                                                           "a point that used them is not tried again")

    @field_validator("axes")
    @classmethod
    def _axes_known(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for axis, values in axes.items():
            check_axis_name(axis)
            if not values:
                raise ValueError(f"axis {axis!r} has no values; give at least one")
            seen = set()
            for v in values:
                try:
                    key = canonical_json(v)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"axis {axis!r} value {v!r} is not representable as JSON ({err})") from None
                if key in seen:
                    raise ValueError(f"axis {axis!r} lists the value {v!r} twice")
                seen.add(key)
        return axes

    @field_validator("options")
    @classmethod
    def _options_json(cls, options: dict[str, Any]) -> dict[str, Any]:
        for key, v in options.items():
            try:
                canonical_json(v)
            except (TypeError, ValueError) as err:
                raise ValueError(f"option {key!r} value {v!r} is not representable as JSON ({err})") from None
        return options

    @model_validator(mode="after")
    def _options_not_twice(self):
        both = sorted(set(self.options) & {a[len(OPTION_PREFIX):] for a in self.axes if a.startswith(OPTION_PREFIX)})
        if both:
            raise ValueError(f"options {both} are both fixed in `options` and swept in `axes`; keep one")
        return self


def check_axis_name(axis: str) -> None:
    """Raise ValueError unless `axis` is a GenerationRequest field or 'options.<name>'."""
    if axis.startswith(OPTION_PREFIX):
        if not axis[len(OPTION_PREFIX):]:
            raise ValueError(f"axis {axis!r} needs an option name after {OPTION_PREFIX!r}")
        return
    fields = sorted(GenerationRequest.model_fields)
    if axis not in fields:
        raise ValueError(f"axis {axis!r} is not a GenerationRequest field; allowed: {fields} "
                         f"or '{OPTION_PREFIX}<name>' for a strategy option")


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read a YAML sweep spec (`yaml.safe_load`: no Python objects); a bad field raises RequestError."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise RequestError(f"SweepSpec ({path})", [("(yaml)", path.name, f"not valid YAML{at}: "
                                                    f"{getattr(err, 'problem', None) or err}")]) from None
    if not isinstance(data, dict):
        raise RequestError(f"SweepSpec ({path})", [("(spec)", type(data).__name__, "the YAML must be a mapping")])
    try:
        return parse_request(data, SweepSpec)
    except RequestError as err:
        raise RequestError(f"SweepSpec ({path})", err.problems) from None


def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: the text a point id hashes.

    >>> canonical_json({"b": 1, "a": [1.5, "x"]})
    '{"a":[1.5,"x"],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def code_identity(strategy: str) -> dict:
    """What names the code that makes a point: the vidlab version and the strategy's option defaults.

    A changed default changes every point id of that strategy, so stale results are never reused.
    """
    from .._version import __version__
    from ..strategies import STRATEGY_OPTIONS, option_defaults
    defaults = option_defaults(strategy) if strategy in STRATEGY_OPTIONS else {}
    return {"vidlab": __version__, "option_defaults": json.loads(canonical_json(defaults))}


def point_id(config: dict, weights_hash: str) -> str:
    """First 16 hex chars of sha256 over the canonical JSON of the config, the model's weights hash
    and the code identity (vidlab version, the strategy's option defaults).

    Same config, weights and code -> same id; a new model version or a changed default -> new ids.
    """
    text = canonical_json({"config": config, "weights_hash": weights_hash,
                           "code": code_identity(config.get("strategy", ""))})
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


@dataclasses.dataclass(frozen=True)
class Point:
    """One cell of the grid: its canonical config, the axis values that made it, and its id."""

    index: int                 # position in the grid (first axis varies slowest)
    point_id: str
    config: dict               # {"request": {...all fields...}, "strategy", "model", "options"}
    axis_values: dict

    @property
    def request(self) -> GenerationRequest:
        return GenerationRequest.model_validate(self.config["request"])


def expand_grid(spec: SweepSpec, weights_hash: str = "") -> list[Point]:
    """The cartesian product of the axes, in order (first axis slowest), each point validated.

    A value that makes an invalid request raises RequestError naming `axes.<axis>` and the value,
    before any point runs. With no axes the grid is the base request alone.
    """
    base = spec.base_request.model_dump(mode="json")
    # 1. each axis value alone on the base request: the error names exactly one axis and value
    problems = []
    for axis, values in spec.axes.items():
        for value in values:
            problems += _value_problems(axis, value, base)
    if problems:
        raise RequestError("SweepSpec", problems)
    # 2. every combination: fields can constrain each other (keyframe times vs duration)
    names = list(spec.axes)
    points = []
    for index, combo in enumerate(itertools.product(*spec.axes.values())):
        axis_values = dict(zip(names, combo))
        config = _point_config(spec, base, axis_values)
        points.append(Point(index, point_id(config, weights_hash), config, axis_values))
    return points


def _point_config(spec: SweepSpec, base: dict, axis_values: dict) -> dict:
    request = dict(base)
    options = dict(spec.options)
    for axis, value in axis_values.items():
        if axis.startswith(OPTION_PREFIX):
            options[axis[len(OPTION_PREFIX):]] = value
        else:
            request[axis] = value
    try:
        validated = parse_request(request)
    except RequestError as err:  # a combination of values no single axis value shows
        raise RequestError("SweepSpec", [("axes (this combination)", axis_values, f"{field}: {msg}")
                                         for field, _, msg in err.problems]) from None
    return {"request": validated.model_dump(mode="json"), "strategy": spec.strategy, "model": spec.model,
            "options": options}


def _value_problems(axis: str, value, base: dict) -> list[tuple[str, Any, str]]:
    """Problems of the axis's own field; cross-field ones wait for the combinations (step 2)."""
    if axis.startswith(OPTION_PREFIX):
        return []  # strategy options are checked by the strategy itself
    try:
        parse_request({**base, axis: value})
    except RequestError as err:
        return [(f"axes.{axis}", value, p[2]) for p in err.problems if p[0] == axis or p[0].startswith(axis + ".")]
    return []
