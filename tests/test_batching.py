"""Batched seeds: one batched call of any strategy for several seeds, each video bit-identical to
its seed's own run; a batch larger than its memory budget split; sweeps that batch give the same
store as sweeps that do not."""
import importlib
import time

import pytest
import torch

import vidlab
from vidlab.sweeps import ResultsStore, SweepSpec, run_sweep
from vidlab.sweeps.batching import seed_batches
from vidlab.config import DEFAULT_BATCH_PIXEL_FRAMES, parse_request, seed_batch_splits
from vidlab.strategies import BATCHED_STRATEGIES, STRATEGIES, RetrySegment, batches_on, check_seed_batch

pytestmark = pytest.mark.slow

BASE = {"prompt": "a red circle in the top left on a white background", "duration": 0.25, "fps": 16,
        "num_inference_steps": 4}


@pytest.mark.parametrize("mode", ["controlnet", "controlnet_img2img"])
def test_batched_frames_are_bit_identical_to_each_seed_alone(mode):
    requests = [dict(BASE, seed=s) for s in (3, 11, 12, 40, 41)]
    batched = vidlab.generate_batch(requests, strategy="frame_chain", mode=mode)
    for request, video in zip(requests, batched):
        alone = vidlab.generate(request, strategy="frame_chain", mode=mode)
        assert torch.equal(video.frames, alone.frames), f"seed {request['seed']}: batched frames differ"
        assert video.record["strategy_record"] == alone.record["strategy_record"]
        assert video.record["request"] == alone.record["request"]
        assert video.record["timing"]["batch_size"] == len(requests) and alone.record["timing"]["batch_size"] == 1
    # the seeds really differ: a batch that repeated one video would pass the check above only by accident
    assert not torch.equal(batched[0].frames, batched[1].frames)


MOTION = "a red circle moves right on a white background"
# strategy, zoo model, options, request: every strategy, and both video models of the zoo
CASES = {
    "frame_chain": ("frame_chain", "shapes-tiny", {}, dict(BASE)),
    "segment_chain": ("segment_chain", "shapes-tiny", {"num_segments": 2}, dict(BASE, duration=0.375)),
    "native": ("native", "shapes-tiny", {}, dict(BASE, prompt=MOTION, duration=0.5)),
    "native@joint": ("native", "shapes-tiny-joint", {}, dict(BASE, prompt=MOTION, duration=0.5)),
    "sliding_window": ("sliding_window", "shapes-tiny", {"window": 6, "overlap": 2},
                       dict(BASE, prompt=MOTION, duration=0.625)),
    "sliding_window@joint": ("sliding_window", "shapes-tiny-joint", {"window": 6, "overlap": 2},
                             dict(BASE, prompt=MOTION, duration=0.625)),
}


@pytest.fixture(scope="module")
def backends():
    from vidlab.backends import load_backend
    return {name: load_backend(name) for name in ("shapes-tiny", "shapes-tiny-joint")}


@pytest.mark.parametrize("case", list(CASES))
def test_every_strategy_batches_seeds_bit_identically(case, backends):
    strategy, model, options, base = CASES[case]
    assert set(BATCHED_STRATEGIES) == set(STRATEGIES)
    requests = [dict(base, seed=s) for s in (7, 0, 3, 12, 5, 1, 9, 4)]
    alone = [vidlab.generate(r, strategy=strategy, model=backends[model], **options) for r in requests]
    assert len({a.frames.sum().item() for a in alone}) == len(requests), "the seeds must give different videos"
    for size in (1, 3, 8):
        batched = vidlab.generate_batch(requests[:size], strategy=strategy, model=backends[model],
                                        batch_budget=DEFAULT_BATCH_PIXEL_FRAMES, **options)  # batched on a CPU too
        for request, video, own in zip(requests, batched, alone):
            assert torch.equal(video.frames, own.frames), f"{case}, batch of {size}: seed {request['seed']} differs"
            assert video.record["strategy_record"] == own.record["strategy_record"]
            assert video.record["timing"]["batch_size"] == size


def test_a_rejected_segment_is_redone_in_a_batch_as_it_is_alone(backends):
    """The callback rejects some seeds' segment 1 on its first try (by the segment's content, so the
    same segments are rejected alone and in the batch): those seeds redo it, the others do not."""
    def reject_some(event):
        if event.unit == "segment" and event.index == 1 and event.attempt == 0 \
                and int(event.preview.sum().item() * 1000) % 2:
            raise RetrySegment("rejected")

    requests = [dict(BASE, duration=0.375, seed=s) for s in range(6)]
    common = dict(strategy="segment_chain", model=backends["shapes-tiny"], num_segments=2, callback=reject_some)
    alone = [vidlab.generate(r, **common) for r in requests]
    batched = vidlab.generate_batch(requests, **common)
    tries = [len(v.record["strategy_record"]["segments"][1]["attempt_seeds"]) for v in batched]
    assert set(tries) == {1, 2}, f"some seeds and not others must be rejected once, got {tries}"
    for own, video in zip(alone, batched):
        assert torch.equal(own.frames, video.frames)
        assert own.record["strategy_record"] == video.record["strategy_record"]


def test_a_failing_shared_segment_call_is_made_seed_by_seed_at_the_same_attempt(backends, monkeypatch):
    """A shared call that raises RuntimeError (out of memory, say) costs no seed an attempt: each seed's
    segment is made alone at that attempt, and every video is the one it makes alone."""
    module = importlib.import_module("vidlab.strategies.segment_chain")  # the package's name is the function
    make = module._image_segments

    def fails_when_shared(ctx, prompt, length, seg_seeds, *args):
        if len(seg_seeds) > 1:
            raise RuntimeError("out of memory")
        return make(ctx, prompt, length, seg_seeds, *args)

    requests = [dict(BASE, duration=0.375, seed=s) for s in range(3)]
    common = dict(strategy="segment_chain", model=backends["shapes-tiny"], num_segments=2)
    alone = [vidlab.generate(r, **common) for r in requests]
    monkeypatch.setattr(module, "_image_segments", fails_when_shared)
    batched = vidlab.generate_batch(requests, **common)
    for own, video in zip(alone, batched):
        assert torch.equal(own.frames, video.frames)
        assert [len(s["attempt_seeds"]) for s in video.record["strategy_record"]["segments"]] == [1, 1]


def test_a_batch_over_its_memory_budget_is_split(backends, monkeypatch):
    requests = [dict(BASE, prompt=MOTION, duration=0.5, seed=s) for s in range(5)]
    pixel_frames = 8 * 64 * 64
    assert [len(b) for b in seed_batch_splits([parse_request(r) for r in requests], 2 * pixel_frames)] == [2, 2, 1]
    assert [len(b) for b in seed_batch_splits([parse_request(r) for r in requests], pixel_frames - 1)] == [1] * 5
    calls = []
    native_batch = BATCHED_STRATEGIES["native"]
    monkeypatch.setitem(BATCHED_STRATEGIES, "native",
                        lambda backend, part, *a: calls.append(len(part)) or native_batch(backend, part, *a))
    videos = vidlab.generate_batch(requests, strategy="native", model=backends["shapes-tiny"],
                                   batch_budget=2 * pixel_frames + 1)
    assert calls == [2, 2]  # the last seed alone, through `native`
    assert [v.record["timing"]["batch_size"] for v in videos] == [2, 2, 2, 2, 1]
    for request, video in zip(requests, videos):
        assert torch.equal(video.frames, vidlab.generate(request, strategy="native", model=backends["shapes-tiny"]).frames)
    with pytest.raises(ValueError, match=r"batch_budget=0 must be a positive integer of frames x pixels"):
        vidlab.generate_batch(requests, strategy="native", model=backends["shapes-tiny"], batch_budget=0)


def test_on_a_cpu_only_the_image_model_strategies_batch_by_default(backends):
    """On a CPU a video model's clips run slower in one call (bench_sweep: native 0.82x), so 'auto'
    makes them one a call there, and a sweep does not group them; frame_chain batches."""
    assert [batches_on(s, "cpu") for s in STRATEGIES] == [True, True, False, False]
    assert [batches_on(s, "cpu", "animatediff") for s in STRATEGIES] == [True, False, False, False]
    assert [batches_on(s, "cpu", None) for s in STRATEGIES] == [True, False, False, False]
    assert all(batches_on(s, "cuda", family) for s in STRATEGIES for family in ("sd", "wan", None))
    requests = [dict(BASE, prompt=MOTION, seed=s) for s in range(3)]
    for strategy, size in (("native", 1), ("frame_chain", 3)):
        videos = vidlab.generate_batch(requests, strategy=strategy, model=backends["shapes-tiny"])
        assert [v.record["timing"]["batch_size"] for v in videos] == [size] * 3


def test_a_batch_may_differ_only_in_seed():
    requests = [parse_request(dict(BASE, seed=0)),
                parse_request(dict(BASE, seed=1, guidance_scale=6.5))]
    with pytest.raises(ValueError, match=r"requests\[1\] differs from requests\[0\] in \['guidance_scale'\]"):
        check_seed_batch(requests)
    with pytest.raises(ValueError, match="requests is empty"):
        check_seed_batch([])


def test_seed_batches_group_only_what_differs_in_seed():
    def job(seed, scale, strategy="frame_chain"):
        return ({"request": {"seed": seed, "prompt": "p"}, "strategy": strategy, "model": "shapes-tiny",
                 "options": {"s": scale}}, 1)
    jobs = [job(0, 1), job(1, 1), job(0, 2), job(2, 1), job(1, 2), job(0, 1, "segment_chain"),
            job(1, 1, "segment_chain"), job(0, 1, "native"), job(1, 1, "native")]
    batches = seed_batches(jobs, max_size=16, config=lambda j: j[0])
    seeds = [[(j[0]["strategy"], j[0]["options"]["s"], j[0]["request"]["seed"]) for j in b] for b in batches]
    native = [[("native", 1, 0), ("native", 1, 1)]] if torch.cuda.is_available() \
        else [[("native", 1, 0)], [("native", 1, 1)]]  # a CPU makes native's seeds one a call
    assert seeds == [[("frame_chain", 1, 0), ("frame_chain", 1, 1), ("frame_chain", 1, 2)],
                     [("frame_chain", 2, 0), ("frame_chain", 2, 1)],
                     [("segment_chain", 1, 0), ("segment_chain", 1, 1)], *native]  # never across strategies
    assert [len(b) for b in seed_batches(jobs, max_size=1, config=lambda j: j[0])] == [1] * 9
    with pytest.raises(ValueError, match="batch_seeds=0"):
        seed_batches(jobs, max_size=0)


SWEEPS = {"frame_chain": (BASE, {"options.controlnet_conditioning_scale": [0.8, 1.2]}),
          "segment_chain": (dict(BASE, duration=0.375), {"guidance_scale": [3.0, 5.0]})}


@pytest.mark.parametrize("strategy", list(SWEEPS))
def test_a_batched_sweep_gives_the_unbatched_sweeps_store(strategy, tmp_path):
    base, axis = SWEEPS[strategy]
    spec = SweepSpec(name="batching", base_request=base, strategy=strategy, axes={"seed": [0, 1, 2], **axis})
    batched = run_sweep(spec, tmp_path / "batched", progress=False, batch_seeds=4)
    alone = run_sweep(spec, tmp_path / "alone", progress=False, batch_seeds=1)
    assert (batched.computed, batched.failed, alone.computed, alone.failed) == (6, 0, 6, 0)
    columns = [c for c in alone.table.columns if c != "wall_time_s" and not c.startswith("peak_memory")
               and not c.startswith("rss_") and c != "finished_at"]
    t1 = batched.table.sort_values("point_id").reset_index(drop=True)[columns]
    t2 = alone.table.sort_values("point_id").reset_index(drop=True)[columns]
    assert t1.equals(t2), "batching changed the sweep's table"
    s1, s2 = ResultsStore(tmp_path / "batched"), ResultsStore(tmp_path / "alone")
    for pid in t1["point_id"]:
        m1, m2 = s1.read_manifest(pid), s2.read_manifest(pid)
        assert m1["files"]["video.mp4"] == m2["files"]["video.mp4"], "the MP4s differ"  # same frames, same bytes
        assert (m1["batch_size"], m2["batch_size"]) == (3, 1)
    assert list(batched.points["batch_size"]) == [3] * 6 and list(alone.points["batch_size"]) == [1] * 6


def test_a_failing_batch_runs_its_points_alone(tmp_path):
    def point_fn(config):
        if config["request"]["seed"] == 1:
            raise ValueError("seed 1 is bad")
        return {"seed": float(config["request"]["seed"])}, None

    def batch_fn(configs):
        return [point_fn(c) for c in configs]  # raises for the batch holding seed 1

    spec = SweepSpec(name="fallback", base_request=BASE, strategy="frame_chain", axes={"seed": [0, 1, 2]})
    report = run_sweep(spec, tmp_path, point_fn=point_fn, batch_fn=batch_fn, progress=False)
    assert (report.computed, report.failed) == (2, 1)
    assert "seed 1 is bad" in report.failures[report.failed_ids[0]]
    assert list(report.points["batch_size"]) == [1, 1, 1]


def test_the_report_flags_points_slower_than_the_last_run(tmp_path):
    delay = {"s": 0.01}

    def point_fn(config):
        time.sleep(delay["s"])
        return {"seed": float(config["request"]["seed"])}, None

    def spec(seeds):
        return SweepSpec(name="timing", base_request=BASE, strategy="frame_chain", axes={"seed": seeds})

    first = run_sweep(spec([0, 1]), tmp_path, point_fn=point_fn, progress=False)
    assert first.regressions == [] and first.last_run is None
    delay["s"] = 0.2  # the new points are 20x slower than the last run's median
    second = run_sweep(spec([0, 1, 2, 3]), tmp_path, point_fn=point_fn, progress=False)
    assert second.last_run["computed"] == 2
    assert sorted(second.regressions) == sorted(second.points["point_id"]) and len(second.regressions) == 2
    assert (second.points["time_ratio"] > 5).all()
    assert "REGRESSION: 2 points" in second.summary()
    third = run_sweep(spec([0, 1, 2, 3, 4]), tmp_path, point_fn=point_fn, progress=False)
    assert third.regressions == [], "as slow as the last run: no regression"
    assert set(third.points.columns) >= {"wall_time_s", "peak_memory_bytes", "batch_size", "regression"}


def test_a_torn_history_line_costs_only_itself(tmp_path):
    """A run killed while appending leaves a torn last line: it is skipped, and the next run's line
    starts on a line of its own instead of being glued to it (and lost with it)."""
    def point_fn(config):
        return {"seed": float(config["request"]["seed"])}, None

    spec = SweepSpec(name="torn", base_request=BASE, strategy="frame_chain", axes={"seed": [0]})
    run_sweep(spec, tmp_path, point_fn=point_fn, progress=False)
    history = tmp_path / "history.jsonl"
    with history.open("a") as fh:
        fh.write('{"sweep": "torn", "points": {"x": 1')  # torn mid-write
    spec = SweepSpec(name="torn", base_request=BASE, strategy="frame_chain", axes={"seed": [0, 1]})
    second = run_sweep(spec, tmp_path, point_fn=point_fn, progress=False)
    assert second.last_run["computed"] == 1
    third = run_sweep(spec.model_copy(update={"axes": {"seed": [0, 1, 2]}}), tmp_path, point_fn=point_fn,
                      progress=False)
    assert third.last_run["computed"] == 1 and len(history.read_text().splitlines()) == 4
