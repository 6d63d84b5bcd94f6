"""Sweeps on worker processes: a local process pool and a local Ray cluster give the serial
sweep's results point for point; each worker loads the model once; killing a worker mid-sweep
loses no finished point and duplicates none."""
import functools
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from sweep_helpers import WEIGHTS_HASH, crash_spec, loads_point, read_log, slow_point
from vidlab.sweeps import ProcessExecutor, ResultsStore, SweepSpec, run_sweep

pytestmark = pytest.mark.slow
TESTS = str(Path(__file__).resolve().parent)
METRICS_ONLY = ("worker_pid", "model_loads", "wall_time_s", "finished_at")


def zoo_spec():
    return SweepSpec(name="parallel", strategy="frame_chain",
                     base_request={"prompt": "a red circle in the top left on a white background", "duration": 0.25,
                                   "fps": 16, "num_inference_steps": 3},
                     axes={"seed": [0, 1], "options.controlnet_conditioning_scale": [0.8, 1.2]})


def same_results(a: Path, b: Path, grid_ids: list[str]) -> None:
    """Metrics and MP4 bytes equal, point for point."""
    sa, sb = ResultsStore(a), ResultsStore(b)
    for pid in grid_ids:
        ma, mb = sa.read_manifest(pid), sb.read_manifest(pid)
        assert ma["status"] == mb["status"] == "ok"
        xa, xb = sa.read_metrics(pid), sb.read_metrics(pid)
        keep = [k for k in xa if k not in METRICS_ONLY and not k.startswith(("peak_memory", "rss_", "cuda_"))]
        assert {k: xa[k] for k in keep} == {k: xb[k] for k in keep}, f"point {pid}: metrics differ"
        assert ma["files"]["video.mp4"] == mb["files"]["video.mp4"], f"point {pid}: videos differ"


def loads_per_worker(store: Path) -> dict[int, set]:
    table = ResultsStore(store).table()
    out = {}
    for pid, loads in zip(table["worker_pid"], table["model_loads"]):
        out.setdefault(int(pid), set()).add(int(loads))
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'vidlab[ray]')")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS, old) if p)  # workers import sweep_helpers
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    except Exception as err:  # noqa: BLE001 - e.g. a container that forbids what Ray's raylet needs
        os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)
        pytest.skip(f"a local Ray cluster could not start on this machine: {type(err).__name__}: {err}")
    yield ray
    ray.shutdown()
    os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)


@pytest.fixture(scope="module")
def serial_store(tmp_path_factory):
    """The zoo sweep run serially in this process, once for the module's comparisons."""
    store = tmp_path_factory.mktemp("serial")
    report = run_sweep(zoo_spec(), store, point_fn=loads_point, weights_hash=WEIGHTS_HASH, progress=False)
    assert report.computed == 4
    return store, list(report.table["point_id"])


def run_on(executor, store: Path):
    """The zoo sweep on `executor`, closed after; its report and the workers' process ids."""
    try:
        report = run_sweep(zoo_spec(), store, point_fn=loads_point, weights_hash=WEIGHTS_HASH, progress=False,
                           executor=executor)
        pids = set(executor.worker_pids()) if hasattr(executor, "worker_pids") else None
    finally:
        executor.close()
    assert (report.computed, report.failed) == (4, 0)
    return report, pids


def test_a_ray_sweep_equals_the_serial_sweep_and_loads_the_model_once_a_worker(tmp_path, ray_cluster,
                                                                                 serial_store):
    from vidlab.sweeps import RayExecutor

    threads = torch.get_num_threads()  # the same torch threads as the serial run: same last bits
    _, worker_pids = run_on(RayExecutor(num_workers=2, threads=threads), tmp_path / "ray")
    same_results(serial_store[0], tmp_path / "ray", serial_store[1])
    loads = loads_per_worker(tmp_path / "ray")
    assert set(loads) <= worker_pids and os.getpid() not in loads, "the points ran on the Ray workers"
    assert all(v == {1} for v in loads.values()), f"model loads per worker process: {loads}"


def test_killing_a_ray_worker_mid_sweep_loses_and_duplicates_nothing(tmp_path, ray_cluster):
    from vidlab.sweeps import RayExecutor

    store, log, starts = tmp_path / "store", tmp_path / "log.txt", tmp_path / "starts.txt"
    spec = crash_spec(seeds=4)  # 8 points of ~0.8 s on 2 workers
    point_fn = functools.partial(slow_point, log_path=str(log), sleep_s=0.8, start_log=str(starts))
    executor = RayExecutor(num_workers=2)
    pids = executor.worker_pids()
    before, killed = {}, []

    def kill_one_worker():
        while True:  # a worker in the middle of a point, after two points are done
            done = {point for _, point in read_log(log)}
            busy = [(pid, point) for pid, point in read_log(starts) if point not in done and pid in pids]
            if len(done) >= 2 and busy:
                break
            time.sleep(0.05)
        before.update({m["point_id"]: m for m in ResultsStore(store).manifests() if m["status"] == "ok"})
        killed.append(busy[-1])
        os.kill(busy[-1][0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        report = run_sweep(spec, store, point_fn=point_fn, weights_hash=WEIGHTS_HASH, progress=False,
                           executor=executor)
    finally:
        killer.join()
        executor.close()
    manifests = ResultsStore(store).manifests()
    ids = [m["point_id"] for m in manifests]
    assert len(ids) == len(set(ids)) == 8 and all(m["status"] == "ok" for m in manifests)
    assert report.failed == 0 and report.done == 8
    assert killed and report.failed_attempts >= 1, "the killed worker's point failed once, then was retried"
    assert ResultsStore(store).read_manifest(killed[0][1])["attempts"] == 2
    assert before, "points finished before the kill"
    for pid, m in before.items():  # finished before the kill: kept, not computed again
        after = ResultsStore(store).read_manifest(pid)
        assert after["finished_at"] == m["finished_at"] and after["attempts"] == 1
    completed = [point for _, point in read_log(log)]
    assert sorted(set(completed)) == sorted(ids) and len(completed) == 8, "each point computed to the end once"


def test_a_process_pool_sweep_equals_the_serial_sweep(tmp_path, serial_store):
    run_on(ProcessExecutor(workers=2, threads=torch.get_num_threads()), tmp_path / "pool")
    same_results(serial_store[0], tmp_path / "pool", serial_store[1])
    loads = loads_per_worker(tmp_path / "pool")
    assert os.getpid() not in loads and all(v == {1} for v in loads.values()), loads


def test_the_sweep_command_names_a_ray_address_without_the_ray_executor(tmp_path, capsys):
    from vidlab.sweeps import sweep_main

    spec = tmp_path / "s.yaml"
    spec.write_text("name: cli\nbase_request: {prompt: a red circle}\nstrategy: frame_chain\naxes: {seed: [0]}\n")
    code = sweep_main([str(spec), "--store", str(tmp_path / "store"), "--executor", "process", "--ray-address",
                       "auto", "--weights-hash", "w", "--no-progress"])
    assert code == 2 and "--ray-address='auto' needs --executor ray, not 'process'" in capsys.readouterr().err
