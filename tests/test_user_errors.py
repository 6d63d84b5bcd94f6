"""Every bad input a user can give the command line ends in one line naming the field or file, the value and
what is allowed (exit status 2, no traceback, before any model loads where it can be told then), and the
video and its manifest never silently disagree. One test per case found by trying the CLI as a new user."""
import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidlab.cli import main as cli_main
from vidlab.io.atomic import clean_stale_temporaries
from vidlab.errors import short
from vidlab.io.lock import folder_lock

ROOT = Path(__file__).resolve().parents[1]
REQUEST = {"prompt": "a red circle in the center on a white background", "duration": 1, "fps": 16,
           "num_inference_steps": 2}


def run_cli(argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of the CLI run in this process."""
    code = cli_main(argv)
    return code, capsys.readouterr().err


def one_clean_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def request_file(tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST))
    return path


@pytest.fixture
def no_model_loads(monkeypatch):
    """Loading a model is an error: the checks must come first."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")
    monkeypatch.setattr(importlib.import_module("vidlab.generate"), "load_backend", refuse)


@pytest.mark.parametrize("argv, says", [
    (["--strategy", "frame_chian"], "strategy='frame_chian' is not one of ['frame_chain', 'native'"),
    (["-o", "controlnet_conditioning_scale=abc"], "controlnet_conditioning_scale = 'abc': Input should be a valid number"),
    (["-o", "controlnet_scale=1"], "controlnet_scale = 1: Extra inputs are not permitted"),
    (["-o", "strength"], "-o='strength' is not key=value"),
    (["--model", "shapes-tinyy"], "model='shapes-tinyy' is not a preset; allowed: a preset ["),
    (["--model", "./no/such/folder"], "model='./no/such/folder' is a path to no folder (nothing at "),
    (["--device", "gpu0"], "device='gpu0' is not a torch device"),
])
def test_a_bad_generate_argument_is_one_line_before_any_model_loads(argv, says, request_file, tmp_path, capsys,
                                                                    no_model_loads):
    line = one_clean_line(*run_cli(["generate", str(request_file), "--out", str(tmp_path / "o"), *argv], capsys))
    assert says in line and line.startswith("vidlab generate: ")
    assert not (tmp_path / "o").exists()  # nothing written either


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_one_line(request_file, tmp_path, capsys, no_model_loads):
    line = one_clean_line(*run_cli(["generate", str(request_file), "--out", str(tmp_path), "--device", "cuda"], capsys))
    assert "device='cuda' is not on this machine" in line and "allowed here: ['cpu'" in line


@pytest.mark.parametrize("request_text, says", [
    (json.dumps({**REQUEST, "duration": 30, "fps": 60, "resolution": "4096x4096"}), "over the budget of"),
    ('{"prompt": "x", "seed": ' + "9" * 5000 + "}", "is not a readable JSON file (ValueError: Exceeds the limit"),
    ('{"prompt": "x", "fps": 7}', "fps = 7: Input should be greater than or equal to 15"),
    ("{not json", "is not valid JSON"),
    ("[" * 5000 + "]" * 5000, "is not a readable JSON file (RecursionError"),
], ids=["over-budget", "5000-digit-seed", "fps", "not-json", "5000-deep"])
def test_a_bad_request_file_is_one_line(request_text, says, tmp_path, capsys, no_model_loads):
    path = tmp_path / "r.json"
    path.write_text(request_text)
    line = one_clean_line(*run_cli(["generate", str(path), "--out", str(tmp_path / "o")], capsys))
    assert says in line and len(line) < 600


def test_a_missing_request_file_and_a_deep_option_are_one_line(tmp_path, capsys, request_file, no_model_loads):
    line = one_clean_line(*run_cli(["generate", str(tmp_path / "nope.json"), "--out", str(tmp_path)], capsys))
    assert "request=" in line and "nope.json" in line and "does not exist" in line
    deep = "[" * 5000 + "]" * 5000
    line = one_clean_line(*run_cli(["generate", str(request_file), "--out", str(tmp_path),
                                    "-o", f"controlnet_conditioning_scale={deep}"], capsys))
    assert "controlnet_conditioning_scale" in line and "chars)" in line and len(line) < 400


@pytest.mark.parametrize("damage, says", [
    ("truncate", "not a readable safetensors file"),
    ("garbage_config", "not valid JSON"),
])
def test_a_corrupt_model_file_is_named_in_one_line(damage, says, tiny_sd, request_file, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_sd["base"], model)
    if damage == "truncate":
        target = sorted((model / "unet").glob("*.safetensors"))[0]
        target.write_bytes(target.read_bytes()[:1000])
    else:
        target = model / "unet" / "config.json"
        target.write_text("{ this is not json")
    line = one_clean_line(*run_cli(["generate", str(request_file), "--out", str(tmp_path / "o"), "--model", str(model)],
                                   capsys))
    assert str(target) in line and says in line and "hf download" not in line


def test_debug_shows_the_traceback(request_file, tmp_path, no_model_loads):
    from vidlab.errors import UserInputError
    with pytest.raises(UserInputError, match="frame_chian"):
        cli_main(["--debug", "generate", str(request_file), "--out", str(tmp_path), "--strategy", "frame_chian"])


@pytest.mark.parametrize("command", ["sweep", "rerun"])
def test_help_of_the_subcommands_works(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main([command, "-h"])
    assert exit_.value.code == 0 and f"vidlab {command}" in capsys.readouterr().out


def test_the_command_line_starts_without_torch_and_says_its_version():
    """`vidlab --help` and `--version` load neither torch nor diffusers (the entry points load on first use),
    and `vidlab.generate` is still the function after its module is imported."""
    code = ("import sys, vidlab.cli; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules; "
            "import vidlab.generate, vidlab; assert callable(vidlab.generate) and vidlab.Video.__name__ == 'Video'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    out = subprocess.run([sys.executable, "-m", "vidlab.cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    import vidlab
    assert out.returncode == 0 and out.stdout.strip() == f"vidlab {vidlab.__version__}"


# ---- sweep specs ---------------------------------------------------------------------------------

SPEC = """name: s
base_request: {prompt: "a red circle", duration: 1, fps: 16}
strategy: frame_chain
axes:
  seed: [0, 1]
"""


def sweep_check(spec_text: str, tmp_path, capsys, *extra) -> tuple[int, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text)
    return run_cli(["sweep", str(path), "--store", str(tmp_path / "store"), "--check", *extra], capsys)


@pytest.mark.parametrize("axes, says", [
    ("seed: [1, 1.0, '1']", "axes.seed = [1, 1.0]: both validate to 1: one point twice; keep one"),
    ("seed: [1, true]", "axes.seed = [1, True]: both validate to 1"),
    ("options.controlnet_conditioning_scale: [0.5, abc]", "axes.options.controlnet_conditioning_scale = 'abc'"),
    ("options.no_such_option: [1]", "axes.options.no_such_option = 1: Extra inputs are not permitted"),
    ("seed: [.nan]", "axis 'seed' value nan is not representable as JSON"),
])
def test_a_bad_axis_is_one_line_before_anything_runs(axes, says, tmp_path, capsys):
    line = one_clean_line(*sweep_check(SPEC.replace("seed: [0, 1]", axes), tmp_path, capsys))
    assert says in line, line
    assert not (tmp_path / "store").exists()


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    line = one_clean_line(*sweep_check(SPEC + "strategy: native\n", tmp_path, capsys))
    assert "strategy = '(given twice)': the key appears at lines 3 and 6; keep one" in line


def test_a_huge_grid_is_refused_at_once_and_the_limit_can_be_raised(tmp_path, capsys):
    axes = ("seed: [" + ", ".join(map(str, range(200))) + "]\n  guidance_scale: [" +
            ", ".join(str(1 + i / 100) for i in range(200)) + "]\n  num_inference_steps: [" +
            ", ".join(map(str, range(1, 101))) + "]")
    t0 = time.perf_counter()
    line = one_clean_line(*sweep_check(SPEC.replace("seed: [0, 1]", axes), tmp_path, capsys))
    assert time.perf_counter() - t0 < 5
    assert "axes = '200 x 200 x 100': make 4,000,000 points, over the limit of 10,000" in line
    code, _ = sweep_check(SPEC.replace("seed: [0, 1]", "seed: [0, 1, 2]"), tmp_path, capsys, "--max-points", "2")
    assert code == 2
    assert sweep_check(SPEC, tmp_path, capsys, "--max-points", "2")[0] == 0


def test_a_full_disk_stops_the_sweep_in_one_line_and_the_rerun_completes_each_point_once(tmp_path, monkeypatch):
    """ENOSPC on the third point's write: the sweep stops with one line (store, points done, free space and
    rerun); the spec, history and done points survive; the rerun computes each remaining point once."""
    import sweep_helpers
    from vidlab.errors import one_line
    from vidlab.sweeps import store as store_module
    from vidlab.sweeps.store import DiskFullError
    from vidlab.sweeps.sweep import run_sweep
    spec = sweep_helpers.crash_spec(seeds=3)
    calls = []

    def point_fn(config):
        calls.append(json.dumps(config, sort_keys=True))
        return {"m": 1.0}, None
    real = store_module.atomic_write_json
    writes = {"n": 0}

    def full_after_two_points(path, obj):
        if Path(path).name == "manifest.json":
            writes["n"] += 1
            if writes["n"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)
    monkeypatch.setattr(store_module, "atomic_write_json", full_after_two_points)
    with pytest.raises(DiskFullError) as err:
        run_sweep(spec, tmp_path, point_fn=point_fn, progress=False, batch_seeds=1)
    line = one_line(err.value)
    assert f"store {tmp_path}" in line and "2 of 6 points are done" in line and "free space and rerun" in line
    assert (tmp_path / "sweep.json").exists()
    monkeypatch.setattr(store_module, "atomic_write_json", real)
    first = list(calls)
    report = run_sweep(spec, tmp_path, point_fn=point_fn, progress=False, batch_seeds=1)
    assert report.done == 6 and not report.failed
    rerun = calls[len(first):]
    assert len(rerun) == 4 and not set(rerun) & set(first[:2])  # the two kept points are not computed again


def test_the_cli_says_a_full_disk_in_one_line(tmp_path, capsys, monkeypatch):
    from vidlab.sweeps import commands

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "history.jsonl"))
    monkeypatch.setattr(commands, "run_sweep", full)
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    line = one_clean_line(*run_cli(["sweep", str(path), "--store", str(tmp_path / "s"), "--weights-hash", "w"], capsys))
    assert "no space left on the device writing" in line and "history.jsonl" in line and "free space" in line


# ---- generate's video and manifest --------------------------------------------------------------

def test_short_values_stay_short():
    assert short(0.41562499999999997) == "0.415625"
    assert len(short("x" * 10_000)) < 100 and "10,002 chars" in short("x" * 10_000)
    assert short(10 ** 5000) == "<int too large to show>"


def test_a_second_generate_on_the_same_out_is_refused(request_file, tmp_path, capsys, no_model_loads):
    with folder_lock(tmp_path / "o", "vidlab generate"):
        line = one_clean_line(*run_cli(["generate", str(request_file), "--out", str(tmp_path / "o")], capsys))
    assert f"another vidlab generate is writing into {tmp_path / 'o'} (lock held by pid {os.getpid()})" in line


def test_an_interrupted_save_leaves_a_pair_read_manifest_refuses(tmp_path, monkeypatch):
    """Killed between the manifest's move and the MP4's: the new manifest beside the old video is refused."""
    from vidlab.io import atomic
    from vidlab.video import MismatchedPairError, Video, read_manifest
    old = Video(torch.zeros(4, 3, 16, 16), 16, {"which": "old"})
    path = old.save(tmp_path / "video.mp4")
    assert read_manifest(path)["which"] == "old"
    real_replace = os.replace

    def die_on_the_mp4(src, dst):
        if Path(dst) == path:  # the finished MP4 moved over the old one
            raise KeyboardInterrupt  # the process ends here
        return real_replace(src, dst)
    monkeypatch.setattr(atomic.os, "replace", die_on_the_mp4)
    with pytest.raises(KeyboardInterrupt):
        Video(torch.ones(4, 3, 16, 16), 16, {"which": "new"}).save(path)
    monkeypatch.undo()
    with pytest.raises(MismatchedPairError, match="describes another video"):
        read_manifest(path)


def test_kill_9_at_random_moments_never_leaves_a_mismatched_pair(request_file, tmp_path):
    """`vidlab generate` killed -9 at 5 moments over its run: afterwards the folder holds no pair, or a pair
    whose manifest matches its MP4 (read_manifest), or one read_manifest refuses; never one that silently
    disagrees. The next run cleans the killed runs' temporaries and completes."""
    from vidlab.video import MismatchedPairError, read_manifest
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "vidlab.cli", "generate", str(request_file), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    full = time.perf_counter() - t0
    outcomes = []
    for k in range(5):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * (0.5 + 0.1 * k))  # the late moments fall in the encode and the writes
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            read_manifest(out / "video.mp4")
            outcomes.append("matching pair")
        except MismatchedPairError:
            outcomes.append("refused pair")
    assert set(outcomes) <= {"matching pair", "refused pair"}
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    assert read_manifest(out / "video.mp4")["video"]["file"] == "video.mp4"
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_stale_temporaries_of_dead_processes_only_are_removed(tmp_path):
    dead = tmp_path / ".tmp-999999999-video.mp4"
    alive = tmp_path / f".tmp-{os.getpid()}-video.mp4"
    mine = tmp_path / ".tmp-notes"
    for p in (dead, alive, mine):
        p.write_text("x")
    assert clean_stale_temporaries(tmp_path) == [dead]
    assert alive.exists() and mine.exists()


def test_a_word_the_prompt_lacks_is_one_line_listing_its_words():
    """Notebook 05's word to map: a parameter, by default the prompt's shape word (any prompt works)."""
    from vidlab.attention.words import subject_word
    from vidlab.errors import UserInputError
    assert subject_word(["a", "green", "triangle", "moves", "left"]) == "triangle"
    assert subject_word(["a", "red", "box"], "Red") == "red"
    assert subject_word(["sunset", "over", "the", "sea"]) == "sunset"
    with pytest.raises(UserInputError, match=r"word='circle' is not a word of the prompt; its words are \['a', 'red'"):
        subject_word(["a", "red", "box"], "circle")
