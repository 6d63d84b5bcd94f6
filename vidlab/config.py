"""Typed generation requests: one source of truth for validation and the JSON Schema.

>>> req = GenerationRequest(prompt="a red circle in the center on a white background", duration=1, fps=16)
>>> req.num_frames, req.width, req.height
(16, 64, 64)
>>> parse_request({"prompt": "", "fps": 5})            # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
RequestError: 2 invalid fields in GenerationRequest: ...
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UserError

RESOLUTION_PRESETS: dict[str, tuple[int, int]] = {
    "64p": (64, 64),      # the offline shapes-tiny zoo
    "256p": (256, 256),
    "512p": (512, 512),   # Stable Diffusion 1.5
    "480p": (832, 480),   # Wan2.2
    "720p": (1280, 720),
    "1080p": (1920, 1080),
}
MAX_SIDE = 4096
MAX_DURATION_S = 300.0
# frames x pixels a request may ask for unless the caller raises it: 1080p x 480 frames (~1e9),
# four times Wan2.2's 720p x 121-frame clip x 8 windows; 4096^2 x 300 s x 60 fps is 300 times more
DEFAULT_BUDGET_PIXEL_FRAMES = 1920 * 1080 * 480
# frames x pixels one batched call may hold, summed over its seeds: two SD1.5 AnimateDiff clips
# (512x512, 16 frames). One such clip in float32 on a CPU peaks near 9 GiB (6 GiB of weights, the
# rest the UNet's activations: its 16 x 2 frames' feature maps, skips and feed-forwards at 64x64),
# two near 12 GiB, inside a 24 GiB machine; on an 80 GiB GPU in half precision, far inside. The
# zoo's 64x64 x 16-frame clips fit 128 to a call. A request larger than this runs alone.
DEFAULT_BATCH_PIXEL_FRAMES = 2 * 512 * 512 * 16


class Strict(BaseModel):
    """Frozen, unknown fields rejected: the base of every vidlab model."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Keyframe(Strict):
    """A prompt that takes effect at `time` seconds ("a rainbow appears at second 3")."""

    time: float = Field(ge=0.0, le=MAX_DURATION_S, description="seconds from the start")
    prompt: str = Field(min_length=1, description="prompt from this time on")


class StructuredPrompt(Strict):
    """A prompt given by parts (seed 000): composed as 'subject action, scene, style'."""

    subject: str = Field(min_length=1)
    action: str = ""
    scene: str = ""
    style: str = ""

    def compose(self) -> str:
        head = " ".join(p for p in (self.subject, self.action) if p)
        return " , ".join(p for p in (head, self.scene, self.style) if p)


class GenerationRequest(Strict):
    """One text-to-video request (seed 000's fields and ranges)."""

    prompt: str | StructuredPrompt = Field(description="text prompt, or its structured parts")
    negative_prompt: str = Field("", description="what the video must not show")
    style: str = Field("", description="style words appended to the prompt, e.g. '3D animation'")
    duration: float = Field(1.0, gt=0.0, le=MAX_DURATION_S, description="seconds")
    fps: int = Field(16, ge=15, le=60, description="frames per second of the output MP4")
    resolution: str = Field("64p", description=f"a preset {sorted(RESOLUTION_PRESETS)} or 'WxH', multiples of 8")
    seed: int = Field(42, ge=0, lt=2**32, description="base seed; frame/segment seeds derive from it")
    motion_intensity: float = Field(0.5, ge=0.1, le=1.5, description="scales camera warp and per-frame change")
    color_palette: Literal["warm", "cool", "neutral"] = Field("neutral", description="one colour grade for all frames")
    camera_motion: Literal["static", "pan", "zoom"] = Field("static", description="2D warp of the anchor per frame")
    temporal_consistency: float = Field(0.85, ge=0.7, le=1.0,
                                        description="maps onto control strength, img2img strength, colour coherence")
    num_inference_steps: int = Field(20, ge=1, le=500)
    guidance_scale: float = Field(5.0, ge=0.0, le=50.0, description="classifier-free guidance scale")
    keyframes: tuple[Keyframe, ...] = Field((), description="prompts that take effect at given seconds")

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v):
        if isinstance(v, str) and not v.strip():
            raise ValueError("must contain non-space text")
        return v

    @field_validator("resolution")
    @classmethod
    def _resolution_known(cls, v: str) -> str:
        parse_resolution(v)
        return v

    @model_validator(mode="after")
    def _keyframes_inside(self):
        for i, k in enumerate(self.keyframes):
            if k.time >= self.duration:
                raise ValueError(f"keyframes[{i}].time={k.time} must be < duration={self.duration}")
        times = [k.time for k in self.keyframes]
        if times != sorted(times):
            raise ValueError(f"keyframes times {times} must be in increasing order")
        return self

    # ---- derived values -------------------------------------------------------------
    @property
    def width(self) -> int:
        return parse_resolution(self.resolution)[0]

    @property
    def height(self) -> int:
        return parse_resolution(self.resolution)[1]

    @property
    def num_frames(self) -> int:
        """round(duration x fps), halves rounded up, at least 1 frame."""
        return max(1, math.floor(self.duration * self.fps + 0.5))

    def full_prompt(self) -> str:
        """The prompt as sent to the model: structured parts composed, style appended."""
        text = self.prompt.compose() if isinstance(self.prompt, StructuredPrompt) else self.prompt
        return f"{text} , {self.style}" if self.style else text

    def prompt_schedule(self) -> list[str]:
        """The prompt of every frame: the base prompt until the first keyframe, then each keyframe's."""
        prompts = []
        for i in range(self.num_frames):
            t = i / self.fps
            current = self.full_prompt()
            for k in self.keyframes:
                if k.time <= t:
                    current = f"{k.prompt} , {self.style}" if self.style else k.prompt
            prompts.append(current)
        return prompts


def parse_resolution(value: str) -> tuple[int, int]:
    """'512p' -> (512, 512); '96x64' -> (96, 64). Errors name the value and what is allowed."""
    if value in RESOLUTION_PRESETS:
        return RESOLUTION_PRESETS[value]
    m = re.fullmatch(r"(\d+)x(\d+)", value)
    if not m:
        raise ValueError(f"resolution={value!r} is neither a preset {sorted(RESOLUTION_PRESETS)} nor 'WxH'")
    w, h = int(m.group(1)), int(m.group(2))
    if w % 8 or h % 8 or not (8 <= w <= MAX_SIDE and 8 <= h <= MAX_SIDE):
        raise ValueError(f"resolution={value!r}: width and height must be multiples of 8 in [8, {MAX_SIDE}]")
    return w, h


class BudgetError(UserError, ValueError):
    """A request larger than its frames x pixels budget."""


def check_budget(request: "GenerationRequest", budget: int | None = DEFAULT_BUDGET_PIXEL_FRAMES) -> int:
    """frames x width x height of the request; BudgetError (naming the numbers) above `budget` (None: no limit).

    >>> check_budget(GenerationRequest(prompt="x", duration=1, fps=16))
    65536
    """
    size = request.num_frames * request.width * request.height
    if budget is not None and size > budget:
        raise BudgetError(f"the request asks for {request.num_frames} frames x {request.width}x{request.height} pixels "
                          f"= {size:,} pixel-frames, over the budget of {budget:,}; lower duration, fps or resolution, "
                          f"or pass a larger budget (generate(..., budget=N), budget=None for none)")
    return size


def check_seed_batch(requests: list[GenerationRequest]) -> None:
    """Requests that may run as one batch: at least one, every field but the seed the same."""
    if not requests:
        raise ValueError("requests is empty: a batch needs at least one request")
    first = requests[0].model_dump(exclude={"seed"})
    for k, r in enumerate(requests[1:], start=1):
        other = r.model_dump(exclude={"seed"})
        differ = sorted(f for f in first if first[f] != other[f])
        if differ:
            raise ValueError(f"requests[{k}] differs from requests[0] in {differ}; a batch may differ only in seed")


def seed_batch_splits(requests: list, batch_budget: int | None = DEFAULT_BATCH_PIXEL_FRAMES) -> list[list]:
    """`requests` (of one size) cut, in order, into batches of at most `batch_budget` frames x pixels
    summed, at least one request each (None: one batch).

    >>> r = GenerationRequest(prompt="x", duration=1, fps=16)  # 16 frames x 64 x 64 = 65,536
    >>> [len(b) for b in seed_batch_splits([r] * 5, batch_budget=2 * 65_536)]
    [2, 2, 1]
    """
    if batch_budget is None:
        return [list(requests)] if requests else []
    if isinstance(batch_budget, bool) or not isinstance(batch_budget, int) or batch_budget < 1:
        raise ValueError(f"batch_budget={batch_budget!r} must be a positive integer of frames x pixels "
                         "(or None: no limit; generate_batch also takes 'auto')")
    size = max(1, batch_budget // check_budget(requests[0], None)) if requests else 1
    return [list(requests[i:i + size]) for i in range(0, len(requests), size)]


class RequestError(UserError, ValueError):
    """Every bad field of a request at once: name, value received, what is allowed."""

    def __init__(self, model: str, problems: list[tuple[str, Any, str]]):
        self.problems = problems
        lines = [f"  - {field} = {value!r}: {allowed}" for field, value, allowed in problems]
        super().__init__(f"{len(problems)} invalid field{'s' * (len(problems) != 1)} in {model}:\n" + "\n".join(lines))


def _allowed(model: type[BaseModel], loc: tuple) -> str:
    """Human text of the constraint on a field, from the model's own JSON Schema."""
    props = model.model_json_schema().get("properties", {})
    spec = props.get(str(loc[0]), {}) if loc else {}
    bounds = []
    for key, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
                     ("minLength", "length >=")):
        if key in spec:
            bounds.append(f"{sym} {spec[key]}")
    if "enum" in spec:
        bounds.append(f"one of {spec['enum']}")
    for alt in spec.get("anyOf", []):
        if "enum" in alt:
            bounds.append(f"one of {alt['enum']}")
    return ", ".join(bounds)


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


MISSING = _Missing()  # the value named in a problem with a required field that was not given


def format_validation_error(model: type[BaseModel], err: ValidationError) -> RequestError:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        field = ".".join(str(p) for p in loc) or "(request)"
        allowed = _allowed(model, loc)
        msg = e["msg"] + (f" (allowed: {allowed})" if allowed else "")
        value = MISSING if e["type"] == "missing" else e.get("input")  # pydantic gives the whole parent there
        problems.append((field, value, msg))
    return RequestError(model.__name__, problems)


def parse_request(data: dict | str, model: type[BaseModel] = GenerationRequest):
    """Validate a dict or JSON text into `model`; raise one RequestError naming every bad field."""
    if isinstance(data, str):
        data = json.loads(data)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(model, err) from None


def request_schema() -> dict:
    """The JSON Schema of GenerationRequest, generated from the model (no hand-kept copy)."""
    return GenerationRequest.model_json_schema()
