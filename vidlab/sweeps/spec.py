"""Sweep specs: a base request, fixed strategy options and axes; the grid of content-addressed points.

A spec in YAML (read with `yaml.safe_load` only):

    name: control-strength
    base_request: {prompt: "a red circle in the center on a white background", duration: 1, fps: 16}
    strategy: frame_chain
    options: {mode: controlnet_img2img}
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
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator

from ..backends.spec import BackendSpec
from ..config import GenerationRequest, RequestError, Strict, parse_request
from ..errors import short

OPTION_PREFIX = "options."
ID_LENGTH = 16  # hex chars of the sha256 kept in a point id
MAX_POINTS = 10_000  # the largest grid a spec may ask for unless the caller raises it (`vidlab sweep --max-points`)
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
    backend: BackendSpec | None = Field(None, description="the model in full: parts (folders or hub ids), family, "
                                                          "device, dtype; its `model` is the spec's `model`")
    options: dict[str, Any] = Field(default_factory=dict, description="strategy options fixed for every point")
    axes: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="axis name -> values; a request field or 'options.<name>'")
    max_retries: int = Field(1, ge=0, le=100, description="extra attempts of a failed point in one run, each alone")
    max_attempts: int = Field(3, ge=1, le=100, description="attempts of a point over every run of the sweep; "
                                                           "a point that used them is not tried again")

    @model_validator(mode="before")
    @classmethod
    def _model_in_one_place(cls, data):
        """`backend.model` and `model` are one field: given in one place, the other follows."""
        if isinstance(data, dict) and isinstance(data.get("backend"), dict):
            inner = data["backend"].get("model")
            if inner is not None and data.get("model", inner) != inner:
                raise ValueError(f"model={data['model']!r} and backend.model={inner!r} disagree; give the "
                                 f"model in one place")
            data = {**data, "model": data.get("model", inner or "shapes-tiny")}
            data["backend"] = {**data["backend"], "model": data["model"]}
        return data

    def backend_spec(self) -> BackendSpec:
        """The model as a BackendSpec (the `backend` block, or the plain `model`)."""
        return self.backend or BackendSpec(model=self.model)

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
                except (TypeError, ValueError, RecursionError) as err:
                    raise ValueError(f"axis {axis!r} value {short(v)} is not representable as JSON "
                                     f"({type(err).__name__}: {short(str(err))})") from None
                if key in seen:
                    raise ValueError(f"axis {axis!r} lists the value {short(v)} twice")
                seen.add(key)
        return axes

    @field_validator("options")
    @classmethod
    def _options_json(cls, options: dict[str, Any]) -> dict[str, Any]:
        for key, v in options.items():
            try:
                canonical_json(v)
            except (TypeError, ValueError, RecursionError) as err:
                raise ValueError(f"option {key!r} value {short(v)} is not representable as JSON "
                                 f"({type(err).__name__}: {short(str(err))})") from None
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


def repeated_key(node) -> tuple[str, int, int] | None:
    """The first mapping key written twice in a composed YAML node tree: (key, first line, second line).
    Plain YAML loading keeps the last of the two silently."""
    stack, visited = [node], set()
    while stack:
        node = stack.pop()
        if id(node) in visited:  # an alias repeats a node (or holds itself: `&a [*a]`)
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        return key.value, seen[key.value] + 1, key.start_mark.line + 1
                    seen[key.value] = key.start_mark.line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read a YAML sweep spec (safe loading: no Python objects; a key given twice is refused); a bad field
    raises RequestError."""
    path = Path(path)
    try:
        text = path.read_text()
        twice = repeated_key(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text) if twice is None else None
    except RecursionError:
        raise RequestError(f"SweepSpec ({path})", [("(yaml)", path.name, "nested too deeply to read")]) from None
    except ValueError as err:  # a value YAML parsed but Python cannot hold, e.g. an int past the digit limit
        if isinstance(err, UnicodeDecodeError):
            raise RequestError(f"SweepSpec ({path})", [("(yaml)", path.name, f"not UTF-8 text ({err.reason})")]) from None
        raise RequestError(f"SweepSpec ({path})", [("(yaml)", path.name, f"a value cannot be read: "
                                                    f"{short(str(err))}")]) from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise RequestError(f"SweepSpec ({path})", [("(yaml)", path.name, f"not valid YAML{at}: "
                                                    f"{getattr(err, 'problem', None) or err}")]) from None
    if twice is not None:
        raise RequestError(f"SweepSpec ({path})", [(twice[0], "(given twice)", f"the key appears at lines "
                                                    f"{twice[1]} and {twice[2]}; keep one")])
    if not isinstance(data, dict):
        raise RequestError(f"SweepSpec ({path})", [("(spec)", type(data).__name__, "the YAML must be a mapping")])
    try:
        return parse_request(data, SweepSpec)
    except RequestError as err:
        raise RequestError(f"SweepSpec ({path})", err.problems) from None
    except RecursionError:
        raise RequestError(f"SweepSpec ({path})", [("(spec)", path.name, "nested too deeply to read")]) from None


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
    config: dict               # {"request": {...all fields...}, "strategy", "model", "options"[, "backend"]}
    axis_values: dict

    @property
    def request(self) -> GenerationRequest:
        return GenerationRequest.model_validate(self.config["request"])


def check_grid(spec: SweepSpec, max_points: int = MAX_POINTS, strategy_options: bool = True) -> int:
    """The grid's size, from the axes' lengths (nothing enumerated), after checking every axis value alone.

    RequestError, before any point runs or any model loads, for: a grid over `max_points`; a value
    that makes an invalid request (naming `axes.<axis>` and the value); values of one axis that are
    the same after validation (`seed: [1, 1.0, "1"]` would be one point three times). With
    `strategy_options`, `options` and each `options.<name>` value are checked by the strategy's
    option model too (`strategies.check_options`).
    """
    size = math.prod(len(v) for v in spec.axes.values())
    if size > max_points:
        raise RequestError("SweepSpec", [("axes", " x ".join(str(len(v)) for v in spec.axes.values()),
                                          f"make {size:,} points, over the limit of {max_points:,}; "
                                          f"shrink an axis or raise the limit (vidlab sweep --max-points N)")])
    base = spec.base_request.model_dump(mode="json")
    problems = []
    if strategy_options:
        from ..strategies import STRATEGIES
        if spec.strategy not in STRATEGIES:
            problems.append(("strategy", spec.strategy, f"is not one of {sorted(STRATEGIES)}"))
            strategy_options = False
    if strategy_options:
        problems += _checked_options(spec, "options", dict(spec.options))[0]
    for axis, values in spec.axes.items():
        normalised = {}
        for value in values:
            found, same = _value_problems(spec, axis, value, base, strategy_options)
            problems += found
            if not found:
                key = canonical_json(same)
                if key in normalised:
                    problems.append((f"axes.{axis}", [normalised[key], value],
                                     f"both validate to {short(same)}: one point twice; keep one"))
                normalised.setdefault(key, value)
    if problems:
        raise RequestError("SweepSpec", problems)
    return size


def expand_grid(spec: SweepSpec, weights_hash: str = "", max_points: int = MAX_POINTS,
                strategy_options: bool = True) -> list[Point]:
    """The cartesian product of the axes, in order (first axis slowest), each point validated.

    `check_grid` first (its RequestErrors, before any point runs). With no axes the grid is the base
    request alone.
    """
    check_grid(spec, max_points, strategy_options)
    base = spec.base_request.model_dump(mode="json")
    # every combination: fields can constrain each other (keyframe times vs duration)
    names = list(spec.axes)
    beyond = spec.backend_spec().beyond_model()  # the same for every point
    points = []
    for index, combo in enumerate(itertools.product(*spec.axes.values())):
        axis_values = dict(zip(names, combo))
        config = _point_config(spec, base, axis_values, beyond)
        points.append(Point(index, point_id(config, weights_hash), config, axis_values))
    return points


def _point_config(spec: SweepSpec, base: dict, axis_values: dict, beyond: dict) -> dict:
    """A point's config; `beyond`: the backend fields besides the model (`BackendSpec.beyond_model`)."""
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
    config = {"request": validated.model_dump(mode="json"), "strategy": spec.strategy, "model": spec.model,
              "options": options}
    return {**config, "backend": beyond} if beyond else config  # a plain model keeps the ids it always had


def _value_problems(spec: SweepSpec, axis: str, value, base: dict, strategy_options: bool):
    """Problems of the axis's own field (cross-field ones wait for the combinations), and the value as
    validated (what two values must not share)."""
    if axis.startswith(OPTION_PREFIX):
        name = axis[len(OPTION_PREFIX):]
        if not strategy_options:
            return [], value
        found, validated = _checked_options(spec, f"axes.{axis}", {name: value}, name)  # `options`: its own check
        return found, (None if found else validated.get(name, value))
    try:
        validated = parse_request({**base, axis: value}).model_dump(mode="json")
    except RequestError as err:
        found = [(f"axes.{axis}", value, p[2]) for p in err.problems if p[0] == axis or p[0].startswith(axis + ".")]
        return found, None
    return [], validated[axis]


def _checked_options(spec: SweepSpec, where: str, options: dict, only: str | None = None) -> tuple[list, dict]:
    """`options` through the strategy's option model, once: (its problems, only the option `only`'s when
    given; the options as validated, {} when there are problems)."""
    from ..strategies import check_options
    try:
        return [], check_options(spec.strategy, options).model_dump(mode="json")
    except RequestError as err:
        return [(f"{where}.{field}" if only is None else where, value, msg) for field, value, msg in err.problems
                if only is None or field.split(".")[0] == only], {}
