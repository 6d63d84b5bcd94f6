"""Sweeps and requests that cannot write outside their store or delete what is not theirs."""
import pytest
import torch

from vidlab.config import RequestError, parse_request
from vidlab.sweeps.spec import SweepSpec
from vidlab.sweeps.store import ResultsStore

BASE = {"base_request": {"prompt": "a red circle"}, "strategy": "frame_chain", "axes": {"seed": [0]}}


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "..", ".hidden", "a\\b", "x" * 101, "sweep name"])
def test_a_sweep_name_that_is_not_a_slug_is_refused_naming_the_field(name):
    with pytest.raises(RequestError) as err:
        parse_request({**BASE, "name": name}, SweepSpec)
    assert [p[0] for p in err.value.problems] == ["name"] and err.value.problems[0][1] == name


@pytest.mark.parametrize("name", ["control-strength", "seeds_2026.v2", "A1"])
def test_slug_names_are_accepted(name):
    assert parse_request({**BASE, "name": name}, SweepSpec).name == name


def test_clean_temp_removes_only_the_stores_own_leftovers(tmp_path):
    store = ResultsStore(tmp_path / "store")
    point = store.points_dir / "abc123"
    (point / ".tmp-video").mkdir(parents=True)
    own = [point / ".tmp-4242-manifest.json", point / ".tmp-7-metrics.parquet", store.root / ".tmp-9-sweep.json"]
    theirs = [store.root / ".tmp-notes.txt", point / ".tmp-draft", store.root / "mine" / ".tmp-1-manifest.json",
              point / "sub" / ".tmp-3-video.mp4"]
    for path in own + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    removed = store.clean_temp()
    assert sorted(removed) == sorted(own + [point / ".tmp-video"])
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in own)


# ---- seeds ------------------------------------------------------------------------------------
def test_sub_seeds_of_neighbouring_seeds_never_coincide():
    from vidlab.seeds import ROLES, sub_seed
    for role in ROLES:
        for s in range(20):
            mine = {sub_seed(s, role, i, a) for i in range(64) for a in range(3)}
            theirs = {sub_seed(s + 1, role, i, a) for i in range(64) for a in range(3)}
            assert len(mine) == 64 * 3 and not mine & theirs
    with pytest.raises(ValueError, match=r"role='frames' is not one of"):
        sub_seed(0, "frames")
    with pytest.raises(ValueError, match=r"seed=-1 must be an integer >= 0"):
        sub_seed(-1, "frame")


def test_strategies_record_sub_seeds_disjoint_from_the_neighbouring_seed(tiny_sd):
    """frame 1 of seed s used to be frame 0 of seed s + 1 (seed + i): no recorded seed is shared now."""
    from vidlab.backends import load_backend
    from vidlab.config import GenerationRequest
    from vidlab.strategies import STRATEGIES

    backend = load_backend("animatediff", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"],
                           motion_adapter=tiny_sd["motion_adapter"])

    def seeds(strategy, options, seed):
        req = GenerationRequest(prompt="a red circle", duration=0.4, fps=15, resolution="32x32",
                                num_inference_steps=4, seed=seed)  # 6 frames
        _, rec = STRATEGIES[strategy](backend, req, options)
        return set(rec.get("per_frame_seeds") or rec.get("window_seeds")
                   or [x for seg in rec.get("segments", []) for x in seg["attempt_seeds"]])

    for strategy, options in (("frame_chain", {}), ("segment_chain", {"num_segments": 3}),
                              ("sliding_window", {"window": 3, "overlap": 1})):
        a, b = seeds(strategy, options, 7), seeds(strategy, options, 8)
        assert len(a) >= 2 and not a & b, strategy


def test_a_stochastic_scheduler_draws_from_the_request_seed_not_the_global_rng(tiny_sd, monkeypatch):
    from diffusers import DDPMScheduler

    from vidlab.backends import load_backend
    from vidlab.config import GenerationRequest
    from vidlab.strategies import STRATEGIES

    backend = load_backend("sd15-canny", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"])
    ddpm = DDPMScheduler.from_config(backend.components["scheduler"].config)
    monkeypatch.setitem(backend.components, "scheduler", ddpm)
    req = GenerationRequest(prompt="a red circle", duration=0.2, fps=15, resolution="32x32",
                            num_inference_steps=4, seed=3)
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        runs.append(STRATEGIES["frame_chain"](backend, req, {})[0])
    assert torch.equal(*runs)
    other, _ = STRATEGIES["frame_chain"](backend, req.model_copy(update={"seed": 4}), {})
    assert not torch.equal(runs[0], other)


# ---- shapes-world metrics only where they apply -------------------------------------------------
@pytest.mark.parametrize("prompt,why", [("a cat sleeps on a sofa", "words outside the shapes world: ['cat', 'sleeps', "
                                                                   "'sofa']"),
                                        ("a red thing on a white background", "words outside the shapes world: "
                                                                               "['thing']"),
                                        ("red on a white background", "names no shape")])
def test_a_prompt_outside_the_shapes_world_keeps_its_video_and_other_metrics(tiny_sd, tmp_path, prompt, why):
    from vidlab.sweeps import ResultsStore, SweepSpec, run_sweep
    from vidlab.sweeps.studies import measure_point

    spec = SweepSpec(name="outside", base_request={"prompt": prompt, "duration": 0.2, "fps": 15,
                                                   "resolution": "32x32", "num_inference_steps": 4},
                     strategy="segment_chain", model=tiny_sd["base"], axes={"seed": [0]}, max_retries=0)
    if why.startswith("words outside"):  # the model cannot see them either: generate says so
        with pytest.warns(UserWarning, match="cannot see words of the prompt: unknown"):
            report = run_sweep(spec, tmp_path / "store", point_fn=measure_point)
    else:
        report = run_sweep(spec, tmp_path / "store", point_fn=measure_point)
    row = report.table.iloc[0]
    assert row["status"] == "ok" and row["shapes_world_metrics"] == f"not applicable: {why}"
    absent = {"adherence", "subject_consistency", "attributes_constant", "schedule_adherence", "frame_0_subject_match"}
    assert not absent & set(report.table.columns)
    assert 0 <= row["ssim_consecutive"] <= 1  # 3 frames: the mean of the two pairs
    assert row["ssim_consecutive"] == pytest.approx((row["frame_1_ssim_prev"] + row["frame_2_ssim_prev"]) / 2)
    store = ResultsStore(tmp_path / "store")
    assert (store.point_dir(row["point_id"]) / "video.mp4").stat().st_size > 0


# ---- budget -------------------------------------------------------------------------------------
def test_a_request_over_its_budget_fails_before_any_model_loads(monkeypatch):
    import importlib

    from vidlab.config import BudgetError
    g = importlib.import_module("vidlab.generate")  # the module (vidlab.generate is also the function)

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(g, "load_backend", no_loading)
    huge = {"prompt": "a red circle", "resolution": "4096x4096", "duration": 300, "fps": 60}
    with pytest.raises(BudgetError, match=r"18000 frames x 4096x4096 pixels = 301,989,888,000 pixel-frames, "
                                          r"over the budget of 995,328,000"):
        g.generate(huge, model="shapes-tiny")
    small = {"prompt": "a red circle", "resolution": "64x64", "duration": 1, "fps": 16}
    with pytest.raises(BudgetError, match=r"65,536 pixel-frames, over the budget of 1,000"):
        g.generate(small, model="shapes-tiny", budget=1000)
    with pytest.raises(AssertionError, match="a model was loaded"):  # budget=None: no limit, on to loading
        g.generate(huge, model="shapes-tiny", budget=None)


# ---- words the model cannot see -----------------------------------------------------------------
def test_unknown_and_truncated_words_are_recorded_warned_or_refused(tiny_sd):
    from vidlab import generate
    from vidlab.backends import load_backend
    from vidlab.strategies.video_fields import UnseenWordsError

    backend = load_backend("sd15-canny", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"])
    base = {"duration": 0.2, "fps": 15, "resolution": "32x32", "num_inference_steps": 2}
    # the word-level tokenizer knows no 'cat'; 16 tokens hold <bos>, 14 words and <eos>
    prompt = "a red cat in the top left on a white background , same subject , same lighting"
    with pytest.warns(UserWarning, match=r"unknown: \['cat'\]; truncated: \[',', 'same', 'lighting'\]"):
        video = generate({**base, "prompt": prompt}, strategy="frame_chain", model=backend)
    assert video.record["unseen_words"] == {"unknown": ["cat"], "truncated": [",", "same", "lighting"]}
    with pytest.raises(UnseenWordsError, match=r"unknown: \['cat'\]"):
        generate({**base, "prompt": "a red cat"}, strategy="frame_chain", model=backend, strict=True)
    clean = generate({**base, "prompt": "a red circle"}, strategy="frame_chain", model=backend, strict=True)
    assert clean.record["unseen_words"] == {"unknown": [], "truncated": []}


# ---- the store: verified points, bounded retries, bad manifests, stale points --------------------
def _spec(**changes):
    from vidlab.sweeps import SweepSpec
    fields = dict(name="rel", base_request={"prompt": "a red circle"}, strategy="frame_chain",
                  axes={"seed": [0, 1, 2]}, max_retries=0)
    return SweepSpec(**{**fields, **changes})


def _metrics(config):
    return {"score": float(config["request"]["seed"])}, None


def test_a_truncated_metrics_file_is_recomputed_with_a_warning(tmp_path):
    from vidlab.sweeps import ResultsStore, run_sweep

    first = run_sweep(_spec(), tmp_path, point_fn=_metrics, progress=False)
    pid = first.table["point_id"][1]
    parquet = tmp_path / "points" / pid / "metrics.parquet"
    parquet.write_bytes(parquet.read_bytes()[:20])  # a crash (or a disk) cut it short
    assert not ResultsStore(tmp_path).is_done(pid)
    calls = []
    with pytest.warns(UserWarning, match=rf"point {pid} .*metrics.parquet does not match its checksum"):
        again = run_sweep(_spec(), tmp_path, point_fn=lambda c: (calls.append(c["request"]["seed"]), _metrics(c))[1],
                          progress=False)
    assert calls == [1] and again.recomputed == {pid: "metrics.parquet does not match its checksum "
                                                      "(truncated or changed)"}
    assert again.table["score"].tolist() == [0.0, 1.0, 2.0]  # no ArrowInvalid, the table is whole again


def test_deterministic_errors_are_not_retried_and_attempts_are_bounded_across_runs(tmp_path):
    from vidlab.sweeps import run_sweep

    calls = []

    def point_fn(config):
        seed = config["request"]["seed"]
        calls.append(seed)
        if seed == 1:
            raise ValueError("shape (3, 4) does not fit")  # the same every time
        if seed == 2:
            raise MemoryError("out of memory")  # may pass next time
        return _metrics(config)

    spec = _spec(max_retries=5, max_attempts=3)
    report = run_sweep(spec, tmp_path, point_fn=point_fn, progress=False)
    assert calls == [0, 1, 2, 2, 2]  # seed 1 once; seed 2 up to max_attempts=3 although max_retries=5
    assert report.failures == {
        report.failed_ids[0]: "not retried, the same every time: ValueError: shape (3, 4) does not fit",
        report.failed_ids[1]: "gave up after 3 attempts (max_attempts): MemoryError: out of memory"}
    assert "not retried, the same every time" in report.summary()
    calls.clear()
    again = run_sweep(spec, tmp_path, point_fn=point_fn, progress=False)  # a later run tries neither again
    assert calls == [] and again.failed == 2 and again.attempts == 0


def test_a_malformed_manifest_is_one_recomputed_point_not_a_stopped_sweep(tmp_path):
    import json

    from vidlab.sweeps import run_sweep

    first = run_sweep(_spec(), tmp_path, point_fn=_metrics, progress=False)
    broken = tmp_path / "points" / first.table["point_id"][0] / "manifest.json"
    manifest = json.loads(broken.read_text())
    del manifest["status"]
    broken.write_text(json.dumps(manifest))
    (tmp_path / "points" / first.table["point_id"][2] / "manifest.json").write_text("{not json")
    with pytest.warns(UserWarning) as warned:
        again = run_sweep(_spec(), tmp_path, point_fn=_metrics, progress=False)
    messages = sorted(str(w.message).split(": ", 1)[1] for w in warned)
    assert messages == ["malformed manifest: missing keys ['status']; computing it again",
                        "unreadable manifest (JSONDecodeError); computing it again"]
    assert again.computed == 2 and again.done == 3 and again.table["status"].tolist() == ["ok"] * 3


def test_a_full_disk_stops_the_sweep_and_the_rerun_completes_it(tmp_path, monkeypatch):
    """A full disk is not a point's fault: the sweep stops (DiskFullError, one line: what is done and kept),
    rather than failing every later point; the rerun completes the grid."""
    import errno

    from vidlab.sweeps import ResultsStore, run_sweep
    from vidlab.sweeps.store import DiskFullError

    original = ResultsStore.save

    def save(self, point, **kw):
        if point.axis_values["seed"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, point, **kw)

    monkeypatch.setattr(ResultsStore, "save", save)
    with pytest.raises(DiskFullError, match=r"1 of 3 points are done and kept there; free space and rerun"):
        run_sweep(_spec(), tmp_path, point_fn=_metrics, progress=False, batch_seeds=1)
    monkeypatch.setattr(ResultsStore, "save", original)
    assert run_sweep(_spec(), tmp_path, point_fn=_metrics, progress=False).table["score"].tolist() == [0.0, 1.0, 2.0]


def test_points_made_by_other_code_get_new_ids_and_are_reported_stale(tmp_path, monkeypatch):
    import vidlab._version
    from vidlab.sweeps import run_sweep
    from vidlab.strategies import FrameChainOptions

    old = run_sweep(_spec(), tmp_path, point_fn=_metrics, progress=False)
    # a changed option default: every id changes, the old points stay readable and are reported stale
    monkeypatch.setattr(FrameChainOptions.model_fields["mode"], "default", "controlnet_img2img")
    changed = run_sweep(_spec(), tmp_path, point_fn=_metrics, progress=False)
    assert changed.computed == 3 and not set(changed.table["point_id"]) & set(old.table["point_id"])
    assert sorted(changed.stale_ids) == sorted(old.table["point_id"]) and "3 stale points" in changed.summary()
    monkeypatch.undo()
    monkeypatch.setattr(vidlab._version, "__version__", "9.9.9")  # a new vidlab version, likewise
    newer = run_sweep(_spec(), tmp_path, point_fn=_metrics, progress=False)
    assert newer.computed == 3 and len(newer.stale_ids) == 6


# ---- crashes: kill -9 at random moments, again and again ------------------------------------------
def test_repeated_sigkills_lose_no_finished_point_and_duplicate_none(tmp_path):
    """A 12-point sweep killed at random moments until it finishes: every finished point survives
    every kill, no point is computed again once finished, and the final table equals an
    uninterrupted run's. Figures (kills survived, points lost) are printed for the report."""
    import os
    import random
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import sweep_helpers
    from vidlab.sweeps import ResultsStore

    store, log = tmp_path / "store", tmp_path / "completed.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    rng = random.Random(2026)

    def done() -> set[str]:
        points = store / "points"
        return {p.name for p in points.iterdir() if ResultsStore(store).is_done(p.name)} if points.exists() else set()

    kills, lost, seen_done, done_when = 0, 0, set(), {}
    for run in range(12):
        proc = subprocess.Popen([sys.executable, sweep_helpers.__file__, str(store), str(log), "6"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(1.0, 6.0) if run < 8 else 180)  # the last runs may finish
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        now = done()
        lost += len(seen_done - now)  # a point finished before must still be finished
        for pid in now - seen_done:
            done_when[pid] = len(sweep_helpers.read_log(log))
        seen_done |= now
        if proc.returncode == 0:
            break
    assert proc.returncode == 0 and kills >= 3 and lost == 0
    # once finished (manifest written), a point never appears in the completion log again
    completions = [pid for _, pid in sweep_helpers.read_log(log)]
    assert all(pid not in completions[done_when[pid]:] for pid in done_when)
    reference = sweep_helpers.run(tmp_path / "reference", tmp_path / "reference.log", sleep_s=0.0, seeds=6)
    final = ResultsStore(store).table()
    columns = ["point_id", "status", "seed", "options.strength", "seed_metric", "strength_metric"]
    assert len(final) == 12
    assert final[columns].equals(reference.table[columns])
    print(f"\ncrash test: {kills} kills survived, {lost} finished points lost, "
          f"{len(completions) - 12} points recomputed after being in flight at a kill")


def test_a_changed_video_is_found_by_the_next_run_not_by_every_table_read(tmp_path):
    import torch

    from vidlab.sweeps import ResultsStore, run_sweep
    from vidlab.video import Video

    def with_video(config):
        return _metrics(config)[0], Video(torch.full((2, 3, 16, 16), 0.5), 16, {"seed": config["request"]["seed"]})

    first = run_sweep(_spec(), tmp_path, point_fn=with_video, progress=False)
    pid = first.table["point_id"][0]
    video = tmp_path / "points" / pid / "video.mp4"
    video.write_bytes(video.read_bytes()[:100])
    store = ResultsStore(tmp_path)
    assert len(store.table()) == 3  # reading a table hashes metrics, not every MP4
    assert store.verify(pid)[1] == "video.mp4 does not match its checksum (truncated or changed)"
    with pytest.warns(UserWarning, match="video.mp4 does not match its checksum"):
        again = run_sweep(_spec(), tmp_path, point_fn=with_video, progress=False)
    assert list(again.recomputed) == [pid] and store.verify(pid) == (store.read_manifest(pid), None)
