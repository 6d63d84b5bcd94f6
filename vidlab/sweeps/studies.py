"""The notebooks' studies as sweeps: their specs, their point function, one call that runs them.

Each study is a list of `SweepSpec`s run into one results store (resumable: a rerun skips the
points already done, a new model version gets new point ids):

- `control_strength_spec`   02: ControlNet control strength x seeds on frame_chain, with a prompt
                             change part-way so that "freezing" can be seen (seed 002);
- `segment_decay_specs`     03: one spec per segment count on segment_chain, every segment the
                             same length, so more segments means a longer video (seed 001);
- `strategy_specs`          04: the same request through each strategy.

`measure_point` is `generate_point` plus what the studies read: adherence to the per-frame prompt
schedule, whether the prompt change was followed, flicker and SSIM over the steady pairs only
(pairs that do not straddle the change), and per-segment consistency against frame 0.

>>> spec = control_strength_spec([0.0, 1.5], seeds=[0, 1], num_frames=4, change_at_frame=2)
>>> spec.base_request.num_frames, spec.base_request.prompt_schedule()[1:3]
(4, ['a red circle in the top left on a white background', 'a red circle in the bottom right on a white background'])
>>> [s.base_request.num_frames for s in segment_decay_specs([1, 3], seeds=[0], frames_per_segment=2)]
[2, 6]
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from .batching import generate_points
from .spec import SweepSpec
from .points import generate_point
from .sweep import SweepReport, default_weights_hash, run_sweep

DEFAULT_PROMPT = "a red circle in the top left on a white background"
DEFAULT_CHANGE_PROMPT = "a red circle in the bottom right on a white background"
SCALE_AXIS = "options.controlnet_conditioning_scale"
SEGMENTS_AXIS = "options.num_segments"


# ---- the point function -------------------------------------------------------------------------
def measure_point(config: dict) -> tuple[dict, object]:
    """`generate_point` (vidlab.generate + video_metrics), plus schedule, steady-pair and per-segment metrics."""
    return _study_metrics(config, *generate_point(config))


def measure_points(configs: list[dict]) -> list[tuple[dict, object]]:
    """`measure_point` of configs that differ only in seed, generated as one batch (`generate_points`)."""
    outputs = generate_points(configs)
    return [_study_metrics(config, metrics, video) for config, (metrics, video) in zip(configs, outputs)]


def _study_metrics(config: dict, metrics: dict, video) -> tuple[dict, object]:
    from ..config import parse_request

    shapes_world = metrics["shapes_world_metrics"] == "applicable"
    record = video.record.get("strategy_record") or {}
    prompts = record.get("per_frame_prompts") or parse_request(config["request"]).prompt_schedule()
    metrics.update(schedule_metrics(video.frames, prompts))
    if record.get("segment_starts"):
        metrics.update(per_segment_metrics(video.frames, record["segment_starts"],
                                           ("ssim", "subject_consistency") if shapes_world else ("ssim",)))
    metrics.update(per_frame_metrics(video.frames, shapes_world))
    return metrics, video


def per_frame_metrics(frames: torch.Tensor, shapes_world: bool = True) -> dict[str, float]:
    """frame_<t>_subject_match (frame t shows frame 0's subject: 1.0 / 0.0; shapes-world videos only)
    and frame_<t>_ssim_prev (SSIM with frame t - 1; NaN for frame 0): one video's per-frame decay curve."""
    from ..metrics import ssim_consecutive, subject_matches

    ssim_prev = [math.nan] + [float(v) for v in ssim_consecutive(frames)]
    out = {f"frame_{t}_ssim_prev": ssim_prev[t] for t in range(frames.shape[0])}
    if shapes_world:
        for t, matched in enumerate(subject_matches(frames, 0)):
            out[f"frame_{t}_subject_match"] = float(matched)
    return out


def schedule_metrics(frames: torch.Tensor, prompts: Sequence[str]) -> dict[str, float]:
    """Metrics of a video (F, 3, H, W) against its per-frame prompts (F,).

    schedule_adherence: mean over frames of the adherence to the frame's own prompt;
    change_followed: over the frames from the first prompt change on, the fraction that show every
        attribute the change asks for (NaN without a change) — 0 means the video froze;
    flicker_steady, ssim_steady, psnr_steady: VBench flicker score, SSIM and PSNR of consecutive pairs
        whose two frames have the same prompt (the wanted change is not flicker).

    >>> from vidlab.world import Scene, render_clip
    >>> clip = render_clip(Scene("circle", "red", "white", "top left", "medium"), 4, None)
    >>> m = schedule_metrics(clip, ["a red circle in the top left"] * 2 + ["a red circle in the bottom right"] * 2)
    >>> m["change_followed"], round(m["schedule_adherence"], 3), round(m["ssim_steady"], 3)  # 2 of 3 attributes
    (0.0, 0.833, 1.0)
    """
    from ..metrics import flicker, psnr_consecutive, ssim_consecutive
    from ..world.analyzer import analyze_frames, matches
    from ..world.captions import parse_prompt, shapes_world_reason

    if len(prompts) != frames.shape[0]:
        raise ValueError(f"Expected one prompt per frame ({frames.shape[0]}), got {len(prompts)}")
    # 1. adherence of each frame to its own prompt
    attributes = analyze_frames(frames)
    wanted = [parse_prompt(p) for p in prompts]
    per_frame = [matches(a, w) for a, w in zip(attributes, wanted)]
    scores = [sum(m.values()) / len(m) if m else math.nan for m in per_frame]
    # 2. the first change: which attributes it asks to change, and whether the frames after it show them
    change = next((i for i in range(1, len(prompts)) if prompts[i] != prompts[i - 1]), None)
    followed = math.nan
    if change is not None:
        changed = tuple(k for k, v in wanted[change].items() if v is not None and v != wanted[change - 1].get(k))
        if changed:
            hits = [all(matches(attributes[i], wanted[i], keys=changed).values()) for i in range(change, len(prompts))]
            followed = sum(hits) / len(hits)
    # 3. pairs inside one prompt span
    steady = torch.tensor([prompts[i] == prompts[i + 1] for i in range(len(prompts) - 1)])
    row = {}
    if all(shapes_world_reason(p) is None for p in set(prompts)):  # otherwise not applicable: absent
        row = {"schedule_adherence": float(torch.tensor(scores, dtype=torch.float64).nanmean()),
               "change_followed": followed}
    for name, pair_metric in (("flicker", flicker), ("ssim", ssim_consecutive), ("psnr", psnr_consecutive)):
        row[f"{name}_steady"] = float(pair_metric(frames)[steady].mean()) if steady.any() else math.nan
    return row


def per_segment_metrics(frames: torch.Tensor, segment_starts: Sequence[int],
                        metrics: Sequence[str] = ("ssim", "subject_consistency")) -> dict[str, float]:
    """segment_<k>_ssim and segment_<k>_subject_consistency: each segment's mean against frame 0.

    The one-video case of `vidlab.metrics.segment_table` (frame 0 itself left out, so a one-frame
    first segment is NaN), flattened into columns a results table can hold.
    """
    from ..metrics import segment_table

    out = {}
    for metric in metrics:
        for row in segment_table([frames], segment_starts, metric).itertuples():
            out[f"segment_{row.segment}_{metric}"] = row.value
    return out


# ---- the studies' specs -----------------------------------------------------------------------
def control_strength_spec(control_strengths: Sequence[float], seeds: Sequence[int], prompt: str = DEFAULT_PROMPT,
                          change_prompt: str | None = DEFAULT_CHANGE_PROMPT, change_at_frame: int = 2,
                          num_frames: int = 8, fps: int = 16, num_inference_steps: int = 20,
                          color_coherence: float = 0.0, model: str = "shapes-tiny",
                          name: str = "control_strength") -> SweepSpec:
    """02: frame_chain over control strength x seeds; the prompt changes at `change_at_frame` (None: never)."""
    if change_prompt is not None and not 0 < change_at_frame < num_frames:
        raise ValueError(f"change_at_frame={change_at_frame} must be in [1, {num_frames - 1}] for {num_frames} frames")
    request = {"prompt": prompt, "duration": num_frames / fps, "fps": fps, "num_inference_steps": num_inference_steps}
    if change_prompt is not None:
        request["keyframes"] = [{"time": change_at_frame / fps, "prompt": change_prompt}]
    return SweepSpec(name=name, base_request=request, strategy="frame_chain", model=model,
                     options={"color_coherence": color_coherence},
                     axes={SCALE_AXIS: list(control_strengths), "seed": list(seeds)})


def segment_decay_specs(segment_counts: Sequence[int], seeds: Sequence[int], prompt: str = DEFAULT_PROMPT,
                        frames_per_segment: int = 4, fps: int = 16, num_inference_steps: int = 20,
                        transition: str = "none", options: dict | None = None,
                        model: str = "shapes-tiny") -> list[SweepSpec]:
    """03: one segment_chain spec per segment count; each segment `frames_per_segment` frames long (the
    clip's length from `segment_chain.frames_for`, so custom crossfade weights count too)."""
    from ..config import parse_request
    from ..strategies.segment_chain import SegmentChainOptions, frames_for
    chain_options = parse_request({**(options or {}), "transition": transition}, SegmentChainOptions)
    specs = []
    for n in segment_counts:
        num_frames = frames_for(n, frames_per_segment, chain_options)
        request = {"prompt": prompt, "duration": num_frames / fps, "fps": fps,
                   "num_inference_steps": num_inference_steps}
        specs.append(SweepSpec(name=f"segment_decay_{n}", base_request=request, strategy="segment_chain",
                               model=model, options={**(options or {}), "transition": transition},
                               axes={SEGMENTS_AXIS: [n], "seed": list(seeds)}))
    return specs


def strategy_specs(strategies: Sequence[str], seeds: Sequence[int], prompt: str | Sequence[str] = DEFAULT_PROMPT,
                   num_frames: int = 8, fps: int = 16, num_inference_steps: int = 20,
                   strategy_options: dict[str, dict] | None = None, model: str = "shapes-tiny",
                   max_retries: int = 0) -> list[SweepSpec]:
    """04: the same requests and seeds through each strategy (options per strategy name, default none).

    prompt: one prompt, or several (an axis: every strategy gets every prompt with every seed).
    strategies: names, or 'strategy@model' to run a strategy on another model beside `model`
    ('native@shapes-tiny-joint': the joint video model next to the factorized one); the
    study table's `strategy` column keeps these labels.

    max_retries defaults to 0: a strategy the model cannot run fails the same way every time.
    """
    strategy_options = strategy_options or {}
    arms = [arm(s, model) for s in strategies]
    unknown = sorted(set(strategy_options) - set(strategies) - {a[0] for a in arms})
    if unknown:
        raise ValueError(f"strategy_options names {unknown}, which are not in strategies={list(strategies)}")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    request = {"prompt": prompts[0], "duration": num_frames / fps, "fps": fps,
               "num_inference_steps": num_inference_steps}
    axes = {"seed": list(seeds), **({"prompt": prompts} if len(prompts) > 1 else {})}
    return [SweepSpec(name=re.sub(r"[^A-Za-z0-9._-]", "_", f"strategy_{label}"), base_request=request, strategy=s,
                      model=m, options=dict(strategy_options.get(label, strategy_options.get(s, {}))), axes=axes,
                      max_retries=max_retries)
            for label, (s, m) in zip(strategies, arms)]


def arm(label: str, model: str) -> tuple[str, str]:
    """'native@shapes-tiny-joint' -> ('native', 'shapes-tiny-joint'); 'native' -> ('native', model).

    An arm of a comparison is a strategy on a model: the same strategy on two models (the joint and
    the factorized video model, say) are two arms.
    """
    strategy, _, other = label.partition("@")
    return strategy, other or model


def arm_label(spec: SweepSpec, specs: Sequence[SweepSpec]) -> str:
    """The spec's strategy, or 'strategy@model' where an earlier spec runs that strategy on another model."""
    first = next(s for s in specs if s.strategy == spec.strategy)
    return spec.strategy if spec.model == first.model else f"{spec.strategy}@{spec.model}"


def sliding_decay_spec(seeds: Sequence[int], prompt: str = DEFAULT_PROMPT, num_frames: int = 32, fps: int = 16,
                       window: int = 16, overlap: int = 8, num_inference_steps: int = 20,
                       model: str = "shapes-tiny") -> SweepSpec:
    """04: one long `sliding_window` video per seed, to read consistency decay and the window seams."""
    request = {"prompt": prompt, "duration": num_frames / fps, "fps": fps, "num_inference_steps": num_inference_steps}
    return SweepSpec(name="sliding_decay", base_request=request, strategy="sliding_window", model=model,
                     options={"window": window, "overlap": overlap}, axes={"seed": list(seeds)}, max_retries=0)


# ---- running a study ----------------------------------------------------------------------------
@dataclasses.dataclass
class StudyRun:
    """The reports of a study's sweeps and the store's table of their points (ok and failed)."""

    store_dir: Path
    reports: list[SweepReport]
    table: pd.DataFrame = dataclasses.field(repr=False)

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.reports)


def run_study(specs: SweepSpec | Sequence[SweepSpec], store_dir: str | Path, progress: bool = False) -> StudyRun:
    """Run every spec's missing points into one store with `measure_point`; resumable. Points that
    differ only in seed run as one batch (`measure_points`), frames bit-identical to one at a time.

    The table has one row per point of these specs, with `strategy` and `sweep` columns beside the
    axis values, metrics, wall time and error (see `ResultsStore.table`).
    """
    specs = [specs] if isinstance(specs, SweepSpec) else list(specs)
    from ..strategies import check_strategy
    for spec in specs:  # a misspelt strategy is an error before any point runs
        check_strategy(spec.strategy)
    reports = []
    for spec in specs:
        reports.append(run_sweep(spec, store_dir, point_fn=measure_point, batch_fn=measure_points,
                                 weights_hash=default_weights_hash(spec), progress=progress))
    tables = [r.table.assign(sweep=s.name, strategy=arm_label(s, specs), model=s.model)
              for r, s in zip(reports, specs) if len(r.table)]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return StudyRun(Path(store_dir), reports, table)
