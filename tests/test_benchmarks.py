"""The device benchmark runs on the CPU (tiny settings) and prints every ratio and both profiles."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_bench_device_runs_on_cpu_and_prints_its_ratios_and_profiles():
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_device.py"), "--device", "cpu",
                          "--frames", "2", "--steps", "2", "--seeds", "2", "--repeats", "1", "--threads", "1",
                          "--profile-rows", "5"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for line in ("1. frame_chain vs seed 002 loop", "2. workbench overhead", "1. a 2-seed frame_chain point"):
        assert line in text, f"missing {line!r} in:\n{text}"
    assert "bit-identical videos: 2/2" in text
    assert text.count("--- profile:") == 2 and "Self CPU" in text


def test_bench_sweep_prints_each_strategys_batched_ratio_last():
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_sweep.py"), "--strategy", "all",
                          "--seeds", "2", "--steps", "4", "--threads", "1"],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    ratios = [line for line in lines if ": batched " in line and line.endswith("x")]
    assert [r.split(":")[0] for r in ratios] == ["frame_chain", "segment_chain", "native", "sliding_window"]
    assert lines[-1] == ratios[-1]
    assert all(float(r.rsplit(" ", 1)[1][:-1]) > 0 for r in ratios)
    assert out.stdout.count("bit-identical videos: 2/2") == 4
