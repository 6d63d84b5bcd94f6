"""Every sweep leaves summary.csv and summary.png in its store (and `vidlab summarize` writes them for an
existing one): one row per point with the mean and interval over the seeds sharing its other axis values."""
import pandas as pd
import pytest

import sweep_helpers
from vidlab.cli import main as cli_main
from vidlab.sweeps.sweep import run_sweep
from vidlab.metrics import t_interval


def point_fn(config):
    seed, strength = config["request"]["seed"], config["options"]["strength"]
    return {"ssim_anchor": 0.9 + 0.01 * seed - strength / 10, "psnr_anchor": 20 + seed + 10 * strength}, None


def test_a_sweep_leaves_its_summary_and_summarize_rewrites_it(tmp_path, capsys):
    spec = sweep_helpers.crash_spec(seeds=3)                      # 3 seeds x strengths 0.3, 0.6
    run_sweep(spec, tmp_path, point_fn=point_fn, progress=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 6 and set(summary["status"]) == {"ok"}
    assert {"seed", "options.strength", "ssim_anchor", "psnr_anchor", "seeds", "ssim_anchor_mean",
            "ssim_anchor_ci_low", "psnr_anchor_ci_high"} <= set(summary.columns)
    row = summary[(summary["seed"] == 1) & (summary["options.strength"] == 0.6)].iloc[0]
    expected = t_interval([20 + s + 6.0 for s in range(3)])
    assert row["seeds"] == 3 and row["psnr_anchor_mean"] == pytest.approx(expected["mean"])
    assert row["psnr_anchor_ci_low"] == pytest.approx(expected["ci_low"])
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "summary.csv").unlink()
    assert cli_main(["summarize", str(tmp_path)]) == 0
    assert "summary.csv" in capsys.readouterr().out and (tmp_path / "summary.csv").exists()


def test_summarize_names_a_folder_that_is_no_store(tmp_path, capsys):
    assert cli_main(["summarize", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vidlab summarize: store='{tmp_path}' is not a sweep's results folder (no sweep.json in it)"


def test_the_figure_leaves_out_what_tells_nothing():
    from vidlab.sweeps.summary import summary_panels
    ok = pd.DataFrame({"num_frames": [12, 12, 12], "flicker": [0.9, 0.95, 0.99], "frame_3_ssim_prev": [0.9, 0.8, 0.7],
                       "ssim_anchor": [0.5, None, 0.7]})
    assert summary_panels(ok, list(ok.columns)) == ["flicker", "ssim_anchor"]  # constant and per-frame: the CSV's
    assert summary_panels(ok.iloc[:1], list(ok.columns)) == ["num_frames", "flicker", "ssim_anchor"]  # one point
