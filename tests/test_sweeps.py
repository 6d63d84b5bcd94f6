"""Tests for vidlab.sweeps sweeps: the grid, content-addressed ids, the store, resume, retries,
the slowdown alert, peak memory, and a real SIGKILL in the middle of a sweep.

Point functions are fakes (no model): the sweep machinery is what is under test. No assertion
depends on how fast this machine is; the slowdown alert is driven by synthetic times or a
baseline no real point can meet.
"""
import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import sweep_helpers
from vidlab.config import RequestError
from vidlab.sweeps import (LocalExecutor, PeakMemory, ResultsStore, SlowdownMonitor, SweepSpec, expand_grid,
                                get_executor, load_sweep_spec, point_id, run_sweep, sweep_main)

PROMPT = "a red circle in the center on a white background"


def make_spec(**changes) -> SweepSpec:
    fields = dict(name="t", base_request={"prompt": PROMPT}, strategy="frame_chain",
                  axes={"seed": [0, 1, 2], "options.controlnet_conditioning_scale": [1.0, 1.5]})
    return SweepSpec(**{**fields, **changes})


def metrics_of(config):
    """A fake fast point function: metrics computed from the config, no video."""
    return {"score": config["request"]["seed"] + config["options"].get("controlnet_conditioning_scale", 0.0)}, None


class CountingPointFn:
    """Records the seeds it was called with; fails where `fail(seed, call_number)` says so."""

    def __init__(self, fail=lambda seed, n: False):
        self.calls, self.fail = [], fail

    def __call__(self, config):
        seed = config["request"]["seed"]
        self.calls.append(seed)
        if self.fail(seed, self.calls.count(seed)):
            raise RuntimeError(f"synthetic failure at seed {seed}")
        return metrics_of(config)


# ---- the grid ------------------------------------------------------------------------------
def test_grid_is_the_cartesian_product_first_axis_slowest():
    points = expand_grid(make_spec())
    assert [p.index for p in points] == list(range(6))
    assert [tuple(p.axis_values.values()) for p in points] == [
        (0, 1.0), (0, 1.5), (1, 1.0), (1, 1.5), (2, 1.0), (2, 1.5)]
    first = points[0].config
    assert set(first) == {"request", "strategy", "model", "options"}
    assert first["request"]["seed"] == 0 and first["request"]["fps"] == 16  # full request, defaults included
    assert first["options"] == {"controlnet_conditioning_scale": 1.0}
    assert (first["strategy"], first["model"]) == ("frame_chain", "shapes-tiny")
    assert points[3].request.seed == 1


def test_grid_without_axes_is_the_base_request_and_fixed_options_reach_every_point():
    assert len(expand_grid(make_spec(axes={}))) == 1
    points = expand_grid(make_spec(strategy="segment_chain", options={"num_segments": 4}, axes={"seed": [5, 6]}))
    assert [p.config["options"] for p in points] == [{"num_segments": 4}] * 2
    with pytest.raises(RequestError, match="options.num_segments = 4: Extra inputs are not permitted"):
        expand_grid(make_spec(options={"num_segments": 4}, axes={"seed": [5, 6]}))  # not a frame_chain option


def test_point_ids_are_content_addressed():
    points = expand_grid(make_spec(), weights_hash="w1")
    ids = [p.point_id for p in points]
    # sha256 of the canonical JSON (sorted keys, no whitespace) of config + weights hash + the code
    # (vidlab version, the strategy's option defaults), 16 hex chars
    import vidlab
    from vidlab.strategies import option_defaults
    code = {"vidlab": vidlab.__version__, "option_defaults": option_defaults("frame_chain")}
    text = json.dumps({"config": points[0].config, "weights_hash": "w1", "code": code}, sort_keys=True,
                      separators=(",", ":"))
    assert ids[0] == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert len(set(ids)) == 6 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    # same config -> same id: again, with an explicit default, with the axes in another order
    assert [p.point_id for p in expand_grid(make_spec(), weights_hash="w1")] == ids
    explicit = make_spec(base_request={"prompt": PROMPT, "fps": 16, "temporal_consistency": 0.85})
    assert [p.point_id for p in expand_grid(explicit, weights_hash="w1")] == ids
    swapped = make_spec(axes={"options.controlnet_conditioning_scale": [1.0, 1.5], "seed": [0, 1, 2]})
    assert {p.point_id for p in expand_grid(swapped, weights_hash="w1")} == set(ids)
    # a new model version or another config -> new ids
    assert not {p.point_id for p in expand_grid(make_spec(), weights_hash="w2")} & set(ids)
    assert not {p.point_id for p in expand_grid(make_spec(model="sd15-canny"), weights_hash="w1")} & set(ids)
    assert point_id(points[0].config, "w1") == ids[0]


# ---- spec errors ---------------------------------------------------------------------------
def write_yaml(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def test_load_sweep_spec_reads_yaml(tmp_path):
    path = write_yaml(tmp_path / "s.yaml", {"name": "cs", "base_request": {"prompt": PROMPT, "duration": 1},
                                            "strategy": "frame_chain", "options": {"mode": "controlnet_img2img"},
                                            "axes": {"seed": [0, 1], "options.strength": [0.3]},
                                            "max_retries": 2})
    spec = load_sweep_spec(path)
    assert (spec.name, spec.model, spec.max_retries, spec.base_request.duration) == ("cs", "shapes-tiny", 2, 1.0)
    assert len(expand_grid(spec)) == 2


def test_unknown_axis_names_the_axis_and_the_allowed_fields(tmp_path):
    path = write_yaml(tmp_path / "s.yaml", {"name": "x", "base_request": {"prompt": PROMPT},
                                            "strategy": "frame_chain", "axes": {"sed": [1, 2]}})
    with pytest.raises(RequestError) as info:
        load_sweep_spec(path)
    message = str(info.value)
    assert "axis 'sed' is not a GenerationRequest field" in message and str(path) in message
    assert "'seed'" in message and "'temporal_consistency'" in message and "options.<name>" in message


@pytest.mark.parametrize("changes, expected", [
    ({"axes": {"seed": [1, -5]}}, "axes.seed = -5: Input should be greater than or equal to 0"),
    ({"axes": {"temporal_consistency": [0.9, 0.5]}}, "axes.temporal_consistency = 0.5"),
    ({"axes": {"camera_motion": ["pan", "spin"]}}, "axes.camera_motion = 'spin'"),
    ({"axes": {"duration": [1, 2], "keyframes": [[{"time": 1.5, "prompt": "a blue square"}]]}},
     "axes (this combination) = {'duration': 1, 'keyframes'"),
])
def test_bad_axis_value_errors_before_any_work(tmp_path, changes, expected):
    calls = CountingPointFn()
    with pytest.raises(RequestError) as info:
        run_sweep(make_spec(**changes), tmp_path / "store", point_fn=calls, progress=False)
    assert expected in str(info.value)
    assert calls.calls == [] and not (tmp_path / "store").exists()


@pytest.mark.parametrize("changes, expected", [
    ({"axes": {"seed": []}}, "axis 'seed' has no values"),
    ({"axes": {"seed": [1, 1]}}, "axis 'seed' lists the value 1 twice"),
    ({"options": {"strength": 0.5}, "axes": {"options.strength": [0.3]}}, "both fixed in `options` and swept"),
    ({"bogus": 1}, "Extra inputs are not permitted"),
    ({"base_request": {"prompt": PROMPT, "fps": 5}}, "base_request.fps = 5"),
])
def test_spec_errors_name_the_field(tmp_path, changes, expected):
    data = {"name": "x", "base_request": {"prompt": PROMPT}, "strategy": "frame_chain", **changes}
    with pytest.raises(RequestError) as info:
        load_sweep_spec(write_yaml(tmp_path / "s.yaml", data))
    assert expected in str(info.value)


def test_unknown_strategy_errors_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"strategy='frame_chian' is not one of \['frame_chain'"):
        run_sweep(make_spec(strategy="frame_chian"), tmp_path / "store", weights_hash="w", progress=False)
    assert not (tmp_path / "store").exists()


def test_spec_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RequestError, match=r"\(yaml\) = 'evil.yaml': not valid YAML at line 1, column 7: "
                                           r"could not determine a constructor for the tag"):
        load_sweep_spec(path)  # safe_load refuses the Python tag; the error names the file and place


def test_sweep_main_reports_a_bad_spec(tmp_path, capsys):
    path = write_yaml(tmp_path / "s.yaml", {"name": "x", "base_request": {"prompt": PROMPT},
                                            "strategy": "frame_chain", "axes": {"seed": [-1]}})
    assert sweep_main([str(path), "--store", str(tmp_path / "store"), "--weights-hash", "w"]) == 2
    assert "axes.seed = -1" in capsys.readouterr().err


# ---- running, resuming, failures -----------------------------------------------------------
def test_resume_skips_done_points_and_computes_only_new_ones(tmp_path):
    calls = CountingPointFn()
    first = run_sweep(make_spec(), tmp_path, point_fn=calls, progress=False)
    assert (first.computed, first.skipped, first.done, first.failed, first.failure_rate) == (6, 0, 6, 0, 0.0)
    assert calls.calls == [0, 0, 1, 1, 2, 2]
    assert list(first.table["score"]) == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert list(first.table.columns[:4]) == ["point_id", "status", "seed", "options.controlnet_conditioning_scale"]
    assert first.table["wall_time_s"].notna().all() and (first.table["peak_memory_bytes"] > 0).all()

    again = run_sweep(make_spec(), tmp_path, point_fn=calls, progress=False)
    assert (again.computed, again.skipped, again.done) == (0, 6, 6) and len(calls.calls) == 6
    assert again.table.equals(first.table)

    grown = run_sweep(make_spec(axes={"seed": [0, 1, 2, 3], "options.controlnet_conditioning_scale": [1.0, 1.5]}),
                      tmp_path, point_fn=calls, progress=False)
    assert (grown.computed, grown.skipped, grown.grid_size) == (2, 6, 8) and calls.calls[6:] == [3, 3]
    assert len(grown.table) == 8


def test_store_files_and_manifest(tmp_path):
    report = run_sweep(make_spec(axes={"seed": [7]}), tmp_path, point_fn=CountingPointFn(), progress=False)
    pid = report.table["point_id"][0]
    folder = tmp_path / "points" / pid
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "metrics.parquet"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["attempts"] == 1 and manifest["error"] is None
    assert manifest["config"]["request"]["seed"] == 7 and manifest["axis_values"] == {"seed": 7}
    assert manifest["wall_time_s"] >= 0 and manifest["peak_memory_bytes"] > 0 and manifest["peak_memory_kind"]
    assert json.loads((tmp_path / "sweep.json").read_text())["axes"] == {"seed": [7]}


class FakeVideo:
    """Stands in for vidlab.Video: `save(path)` writes the MP4 and a JSON record beside it."""

    def save(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not really an mp4")
        path.with_suffix(".json").write_text("{}")
        return path


def test_video_is_stored_beside_the_manifest(tmp_path):
    report = run_sweep(make_spec(axes={"seed": [1]}), tmp_path, point_fn=lambda c: ({"m": 1.0}, FakeVideo()),
                       progress=False)
    folder = tmp_path / "points" / report.table["point_id"][0]
    assert (folder / "video.mp4").read_bytes() == b"not really an mp4" and (folder / "video.json").exists()
    assert json.loads((folder / "manifest.json").read_text())["video_file"] == "video.mp4"
    assert not list(tmp_path.rglob(".tmp-*"))


def test_default_point_function_calls_generate_then_video_metrics(tmp_path, monkeypatch):
    import vidlab
    import vidlab.metrics

    seen = {}

    def fake_generate(request, strategy, model, **options):
        seen.update(request=request, strategy=strategy, model=model, options=options)
        video = FakeVideo()
        video.frames, video.record = "FRAMES", {"strategy_record": {"segment_starts": [0, 8]}}
        return video

    def fake_video_metrics(frames, prompt=None, segment_starts=None):
        seen.update(frames=frames, prompt=prompt, segment_starts=segment_starts)
        return {"flicker": 0.25}

    # the module vidlab.generate (the package face's `generate` attribute is the function it holds)
    monkeypatch.setattr(importlib.import_module("vidlab.generate"), "generate", fake_generate)
    monkeypatch.setattr(vidlab.metrics, "video_metrics", fake_video_metrics, raising=False)
    spec = make_spec(strategy="segment_chain", options={"num_segments": 2}, axes={"seed": [3]})
    report = run_sweep(spec, tmp_path, weights_hash="w", progress=False)  # point_fn=None: the default
    assert report.computed == 1 and report.table["flicker"][0] == 0.25
    assert seen["request"].seed == 3 and seen["request"].prompt == PROMPT
    assert (seen["strategy"], seen["model"].preset.name, seen["options"]) == ("segment_chain", "shapes-tiny",
                                                                              {"num_segments": 2})
    assert (seen["frames"], seen["prompt"], seen["segment_starts"]) == ("FRAMES", PROMPT, [0, 8])
    assert (tmp_path / "points" / report.table["point_id"][0] / "video.mp4").exists()


def test_failing_point_is_recorded_then_retried_alone_at_the_end(tmp_path):
    flaky = CountingPointFn(fail=lambda seed, n: seed == 1 and n == 1)  # seed 1 fails its first try only
    report = run_sweep(make_spec(max_retries=1), tmp_path, point_fn=flaky, progress=False)
    assert flaky.calls == [0, 0, 1, 1, 2, 2, 1]  # the first pass, then seed 1's failed point alone
    assert (report.computed, report.failed, report.attempts, report.failed_attempts) == (6, 0, 7, 1)
    row = report.table[report.table["seed"] == 1].iloc[0]
    assert (row["status"], row["attempts"]) == ("ok", 2)


def test_point_failing_every_time_is_recorded_and_reattempted_next_run(tmp_path):
    broken = CountingPointFn(fail=lambda seed, n: seed == 2)  # fails every time
    report = run_sweep(make_spec(axes={"seed": [0, 1, 2]}, max_retries=1), tmp_path, point_fn=broken,
                       progress=False)
    assert broken.calls == [0, 1, 2, 2]
    assert (report.computed, report.failed, report.done) == (2, 1, 2)
    assert report.failure_rate == pytest.approx(1 / 3)
    failed = report.table[report.table["status"] == "failed"].iloc[0]
    assert failed["seed"] == 2 and failed["error"] == "RuntimeError: synthetic failure at seed 2"
    assert pd.isna(failed["score"])  # a failed point has no metrics
    manifest = ResultsStore(tmp_path).read_manifest(report.failed_ids[0])
    assert manifest["status"] == "failed" and manifest["attempts"] == 2
    assert "Traceback" in manifest["traceback"] and "synthetic failure at seed 2" in manifest["traceback"]

    broken.fail = lambda seed, n: False  # fixed: the next run attempts only the failed point
    again = run_sweep(make_spec(axes={"seed": [0, 1, 2]}, max_retries=1), tmp_path, point_fn=broken,
                      progress=False)
    assert broken.calls[4:] == [2]
    assert (again.computed, again.skipped, again.failed, again.failure_rate) == (1, 2, 0, 0.0)
    assert ResultsStore(tmp_path).read_manifest(report.failed_ids[0])["attempts"] == 3


def test_bad_point_function_output_is_a_recorded_failure(tmp_path):
    report = run_sweep(make_spec(axes={"seed": [0]}, max_retries=0), tmp_path, point_fn=lambda c: [1, 2],
                       progress=False)
    assert report.failed == 1
    assert "point_fn must return (metrics: dict, video or None), got list" in report.table["error"][0]


# ---- slowdown alert ------------------------------------------------------------------------
def test_slowdown_alert_fires_on_three_slow_points_in_a_row():
    monitor = SlowdownMonitor(baseline_points=3)
    times = [1.0, 0.9, 1.1,          # baseline: median 1.0
             1.25, 1.3, 1.2,         # 1.2 is not > 20% slower: the streak ends
             1.21, 1.5, 2.0,         # three in a row -> alert
             1.3, 1.3, 1.0, 1.3]     # streak restarts after an alert, broken again
    alerts = [monitor.observe(f"p{i}", s) for i, s in enumerate(times)]
    fired = [a for a in alerts if a is not None]
    assert monitor.baseline_seconds == 1.0 and len(fired) == 1 and monitor.alerts == fired
    assert fired[0].point_ids == ["p6", "p7", "p8"] and fired[0].seconds == [1.21, 1.5, 2.0]
    assert "3 points in a row > 1.20x the baseline 1.00 s" in str(fired[0])


def test_slowdown_baseline_from_earlier_points_or_given():
    resumed = SlowdownMonitor(baseline_points=3)
    resumed.warm_up([2.0, 4.0, 3.0])  # points finished by an earlier run set the baseline
    assert resumed.baseline_seconds == 3.0
    assert [resumed.observe(f"p{i}", 3.7) for i in range(3)][-1].point_ids == ["p0", "p1", "p2"]
    given = SlowdownMonitor(baseline_seconds=0.5)
    assert [given.observe(f"p{i}", 0.61) is not None for i in range(6)] == [False, False, True] * 2
    with pytest.raises(ValueError, match="baseline_seconds=0 must be > 0"):
        SlowdownMonitor(baseline_seconds=0)


def test_run_sweep_raises_slowdown_alerts(tmp_path):
    # no real point runs within 1.2 ns: every point is "slow" against this baseline
    report = run_sweep(make_spec(), tmp_path, point_fn=metrics_of, progress=False, baseline_seconds=1e-9)
    ids = list(report.table["point_id"])
    assert [a.point_ids for a in report.alerts] == [ids[:3], ids[3:]]
    quiet = run_sweep(make_spec(), tmp_path / "b", point_fn=metrics_of, progress=False, baseline_seconds=3600)
    assert quiet.alerts == [] and quiet.baseline_seconds == 3600


# ---- peak memory ---------------------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="per-point RSS peak needs Linux")
def test_peak_memory_is_measured_per_point(tmp_path):
    size = 96 * 2**20

    def allocate(config):
        buffer = bytearray(size)  # touched (zeroed) pages: resident
        return {"n": float(len(buffer))}, None

    report = run_sweep(make_spec(axes={"seed": [0]}), tmp_path, point_fn=allocate, progress=False)
    manifest = ResultsStore(tmp_path).read_manifest(report.table["point_id"][0])
    memory = manifest["memory"]
    assert memory["rss_kind"].startswith("VmHWM") and memory["cuda_peak_bytes"] is None
    assert memory["rss_peak_bytes"] - memory["rss_start_bytes"] >= 0.9 * size
    # the counter was reset: a block that allocates nothing does not report the earlier peak
    with PeakMemory() as quiet:
        pass
    assert quiet.result["rss_peak_bytes"] < memory["rss_peak_bytes"] - 0.5 * size


def test_tracemalloc_peak_is_opt_in():
    with PeakMemory(trace_python=True) as mem:
        data = [0] * 1_000_000  # ~8 MB of Python list
    assert mem.result["python_peak_bytes"] >= 7_000_000 and len(data) == 1_000_000
    with PeakMemory() as mem:
        pass
    assert mem.result["python_peak_bytes"] is None


# ---- executors -----------------------------------------------------------------------------
def test_executors(monkeypatch):
    assert isinstance(get_executor(None), LocalExecutor) and isinstance(get_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match=r"executor='dask' is not one of \['local', 'process', 'ray'\]"):
        get_executor("dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without ray: `import ray` fails
    with pytest.raises(ImportError, match=r"RayExecutor needs the `ray` package.*pip install 'vidlab\[ray\]'"):
        get_executor("ray")


# ---- the crash: a real SIGKILL in the middle of a sweep, then resume -------------------------
def done_ids(store: Path) -> set[str]:
    points = store / "points"
    if not points.exists():
        return set()
    return {p.name for p in points.iterdir() if ResultsStore(store).is_done(p.name)}


def test_sigkill_mid_sweep_then_resume_computes_each_point_once(tmp_path):
    store, log = tmp_path / "store", tmp_path / "completed.log"
    grid = [p.point_id for p in expand_grid(sweep_helpers.crash_spec(), sweep_helpers.WEIGHTS_HASH)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, sweep_helpers.__file__, str(store), str(log)], env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 120  # imports are slow on a loaded machine
            while len(done_ids(store)) < 2:
                assert proc.poll() is None, f"sweep exited before the kill: {(tmp_path / 'stderr.txt').read_text()}"
                assert time.monotonic() < deadline, "no 2 points done within 120 s"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # 1. the killed store: some points done, not all, and readable as it is
    done_at_kill = done_ids(store)
    assert 2 <= len(done_at_kill) < len(grid)
    table = ResultsStore(store).table(status="ok")
    assert set(table["point_id"]) == done_at_kill
    first_run = [pid for _, pid in sweep_helpers.read_log(log)]
    assert done_at_kill <= set(first_run)
    assert len(first_run) - len(done_at_kill) <= 1  # at most the point in flight completed without its manifest

    # 2. resume to completion
    report = sweep_helpers.run(store, log, sleep_s=0.0)
    assert (report.skipped, report.computed, report.failed) == (len(done_at_kill), len(grid) - len(done_at_kill), 0)

    # 3. each point computed once: no finished point again, every missing one exactly once
    second_run = [pid for proc_id, pid in sweep_helpers.read_log(log)[len(first_run):]]
    assert all(proc_id == os.getpid() for proc_id, _ in sweep_helpers.read_log(log)[len(first_run):])
    assert sorted(second_run) == sorted(set(grid) - done_at_kill)
    assert len(done_at_kill) + len(second_run) == len(grid)

    # 4. nothing partial left; the table has the whole grid, in grid order
    assert not list(store.rglob(".tmp-*"))
    final = ResultsStore(store).table()
    assert len(final) == len(grid) and list(final["point_id"]) == grid and (final["status"] == "ok").all()
    assert sorted(final["seed_metric"]) == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


def test_one_sweep_at_a_time_per_store(tmp_path):
    with ResultsStore(tmp_path).exclusive():
        with pytest.raises(RuntimeError, match=f"another sweep is writing into {tmp_path} .lock held by pid"):
            run_sweep(make_spec(), tmp_path, point_fn=metrics_of, progress=False)
    assert run_sweep(make_spec(), tmp_path, point_fn=metrics_of, progress=False).computed == 6


def test_leftover_temp_files_are_ignored_then_cleaned(tmp_path):
    report = run_sweep(make_spec(axes={"seed": [0, 1]}), tmp_path, point_fn=metrics_of, progress=False)
    folder = tmp_path / "points" / report.table["point_id"][0]
    (folder / ".tmp-999-manifest.json").write_text('{"status": "ok", "trunc')      # a killed write
    (tmp_path / "points" / "ffffffffffffffff").mkdir()                            # a point never finished
    (tmp_path / "points" / "ffffffffffffffff" / ".tmp-999-metrics.parquet").write_bytes(b"PAR1")
    assert len(ResultsStore(tmp_path).table()) == 2
    again = run_sweep(make_spec(axes={"seed": [0, 1]}), tmp_path, point_fn=metrics_of, progress=False)
    assert again.skipped == 2 and not list(tmp_path.rglob(".tmp-*"))
