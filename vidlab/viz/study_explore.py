"""What a click on the Explore panel of notebooks 02-04 runs: the notebook's study again with the widgets' values.

Each function takes the notebook's fixed parameters and returns the `run(...)` that
`vidlab.viz.controls.controls` calls with the widgets' values; points already in the store are
read back, not recomputed. What it returns is what the panel shows (a video, tables, Figures).
"""
from __future__ import annotations

from pathlib import Path

from ..sweeps.analysis import curves_over_seeds, decay_table, frame_curves, freeze_flicker_table, strategy_summary
from ..sweeps.studies import (SCALE_AXIS, SEGMENTS_AXIS, control_strength_spec, run_study, segment_decay_specs,
                                   strategy_specs)
from .controls import point_video
from ..sweeps.plots import plot_decay_beside_seed001, plot_frame_decay, plot_freeze_flicker, plot_metric_curves


def control_strength_explorer(store, control_strengths, change_prompt, change_at_frame, num_frames,
                              num_inference_steps: int, model: str):
    """02: the sweep with the clicked strength added; its video, the curves and freeze against flicker."""
    def explore(prompt, control_strength, seeds):
        spec = control_strength_spec(sorted({*control_strengths, control_strength}), seeds, prompt, change_prompt,
                                     change_at_frame, num_frames, num_inference_steps=num_inference_steps, model=model)
        study, shown = _along_axis(spec, store, SCALE_AXIS, control_strength, seeds,
                                   ["ssim_steady", "flicker_steady", "change_followed"], "control strength")
        return shown + [plot_freeze_flicker(freeze_flicker_table(study.table))]
    return explore


def segment_explorer(store, segment_counts, frames_per_segment: int, num_inference_steps: int, transition: str,
                     model: str):
    """03: the decay study with the clicked segment count added; its video, the curves, seed 001's table beside."""
    def explore(prompt, segments, seeds):
        specs = segment_decay_specs(sorted({*segment_counts, segments}), seeds, prompt, frames_per_segment,
                                    num_inference_steps=num_inference_steps, transition=transition, model=model)
        study, shown = _along_axis(specs, store, SEGMENTS_AXIS, segments, seeds,
                                   ["subject_consistency", "ssim_anchor", "color_drift"], "segments")
        return shown + [plot_decay_beside_seed001(decay_table(study.table))]
    return explore


def _along_axis(specs, store, axis: str, value, seeds, metrics: list[str], xlabel: str):
    """Run a study swept along `axis`; return it and what every such panel shows first: the video of the
    clicked value at the first seed, and the metrics' curves over the axis (mean and spread over seeds)."""
    study = run_study(specs, Path(store), progress=True)
    curves = curves_over_seeds(study.table, axis, metrics)
    return study, [point_video(study, seed=seeds[0], **{axis: value}),
                   plot_metric_curves(curves, axis, xlabel=xlabel, title=f"{len(seeds)} seeds")]


def strategy_explorer(store, num_frames: int, num_inference_steps: int, strategy_options: dict, model: str):
    """04: one strategy (or 'strategy@model' arm) on the clicked seeds; its video, summary row and decay."""
    def explore(prompt, strategy, seeds):
        options = {strategy: strategy_options[strategy]} if strategy in strategy_options else {}
        specs = strategy_specs([strategy], seeds, prompt, num_frames, num_inference_steps=num_inference_steps,
                               strategy_options=options, model=model)
        study = run_study(specs, Path(store), progress=True)
        made = (study.table["status"] == "ok").any()
        return [point_video(study, seed=seeds[0]), strategy_summary(study.table, [strategy]),
                plot_frame_decay(frame_curves(study.table), title=f"{strategy}, {len(seeds)} seeds") if made else None]
    return explore
