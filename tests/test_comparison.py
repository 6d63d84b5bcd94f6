"""Seed 003's comparison: arms 'strategy@model', motion adherence, intervals and paired differences,
checked against hand-computed values (no model needed)."""
import math

import pandas as pd
import pytest
from scipy import stats

from vidlab.sweeps.analysis import paired_differences, strategy_intervals
from vidlab.sweeps.studies import arm, arm_label, strategy_specs
from vidlab.metrics import video_metrics
from vidlab.world import Scene, render_clip
from vidlab.world.analyzer import direction_of


def test_direction_of_names_the_nearest_of_eight():
    assert direction_of((10.0, 0.0)) == "right" and direction_of((-3.0, 3.2)) == "down left"
    assert direction_of((0.0, -9.0)) == "up" and direction_of((1.0, 1.0)) is None  # under 2 px: still


def test_motion_adherence_reads_the_move_the_prompt_names():
    clip = render_clip(Scene("square", "blue", "white", "left", "medium"), 6, "right")
    assert video_metrics(clip, prompt="a blue square moves right slowly on a white background")["motion_adherence"] == 1.0
    assert video_metrics(clip, prompt="a blue square moves up left slowly on a white background")["motion_adherence"] == 0.0
    assert "motion_adherence" not in video_metrics(clip, prompt="a blue square on a white background")
    still = render_clip(Scene("square", "blue", "white", "left", "medium"), 6)
    assert video_metrics(still, prompt="a blue square moves right on a white background")["motion_adherence"] == 0.0


def test_arms_run_a_strategy_on_another_model():
    assert arm("native@shapes-tiny-joint", "shapes-tiny") == ("native", "shapes-tiny-joint")
    assert arm("native", "shapes-tiny") == ("native", "shapes-tiny")
    specs = strategy_specs(["native", "native@shapes-tiny-joint"], [0, 1], "a red circle moves left on a "
                           "white background", strategy_options={"native@shapes-tiny-joint": {}})
    assert [(s.strategy, s.model) for s in specs] == [("native", "shapes-tiny"), ("native", "shapes-tiny-joint")]
    assert len({s.name for s in specs}) == 2
    assert [arm_label(s, specs) for s in specs] == ["native", "native@shapes-tiny-joint"]
    with pytest.raises(ValueError, match="not in strategies"):
        strategy_specs(["native"], [0], strategy_options={"frame_chain": {}})


def comparison_table():
    rows = []
    for seed, (a, b) in enumerate([(0.5, 0.7), (0.6, 0.9), (0.7, 0.8), (0.4, 0.7)]):
        rows += [{"status": "ok", "strategy": "native", "seed": seed, "ssim_consecutive": a, "flicker": 0.9},
                 {"status": "ok", "strategy": "frame_chain", "seed": seed, "ssim_consecutive": b, "flicker": 0.9}]
    rows.append({"status": "failed", "strategy": "frame_chain", "seed": 9, "ssim_consecutive": None, "flicker": None})
    return pd.DataFrame(rows)


def test_paired_differences_against_a_hand_computed_interval():
    paired = paired_differences(comparison_table(), "native", metrics=["ssim_consecutive", "flicker"])
    row = paired[paired["metric"] == "ssim_consecutive"].iloc[0]
    diffs = [0.2, 0.3, 0.1, 0.3]
    half = stats.t.ppf(0.975, 3) * pd.Series(diffs).std() / math.sqrt(4)
    assert row["n"] == 4 and row["mean"] == pytest.approx(0.225)
    assert row["ci_low"] == pytest.approx(0.225 - half) and row["ci_high"] == pytest.approx(0.225 + half)
    assert row["decided"] == "higher"
    flat = paired[paired["metric"] == "flicker"].iloc[0]
    assert flat["mean"] == pytest.approx(0.0) and flat["decided"] == "not decided"


def test_strategy_intervals_count_ok_videos_only():
    table = strategy_intervals(comparison_table(), metrics=["ssim_consecutive"]).set_index("strategy")
    assert table.loc["frame_chain", "n"] == 4 and table.loc["frame_chain", "mean"] == pytest.approx(0.775)
    assert table.loc["native", "mean"] == pytest.approx(0.55)
