"""Real checkpoint layouts from the command line and sweep YAML: SD1.5 + ControlNet, AnimateDiff, Wan, each
saved as tiny components in its diffusers layout and loaded through the same `from_pretrained` path."""
import json

import pytest
import torch
import yaml

from vidlab.backends.presets import PART_HELP, PARTS
from vidlab.backends.spec import BackendSpec
from vidlab.cli import main as cli_main
from vidlab.errors import UserInputError

PROMPT = "a red circle in the center on a white background"


def request_file(tmp_path, **kw):
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"prompt": PROMPT, "duration": 0.4, "fps": 15, "resolution": "32x32",
                                "num_inference_steps": 2, "seed": 5, **kw}))
    return str(path)


def generate(tmp_path, out: str, *flags) -> dict:
    assert cli_main(["generate", request_file(tmp_path), "--out", str(tmp_path / out), *flags]) == 0
    return json.loads((tmp_path / out / "video.json").read_text())


def frames_of(manifest: dict) -> str:
    return manifest["video"]["frames_sha256"]


@pytest.fixture(scope="module")
def other_vae(tiny_sd, tmp_path_factory):
    """The tiny SD VAE with its decoder's last layer halved: a VAE folder of its own that draws differently."""
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(tiny_sd["base"], subfolder="vae")
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(0.5)
    folder = tmp_path_factory.mktemp("vae") / "vae_only"
    vae.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def test_every_part_has_a_flag_and_a_help_text(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")   # argparse wraps help at the terminal's width
    assert set(PART_HELP) == set(PARTS) == set(BackendSpec.model_fields) - {"model", "family", "device", "dtype"}
    with pytest.raises(SystemExit):
        cli_main(["generate", "-h"])
    shown = " ".join(capsys.readouterr().out.split())
    for part in PARTS:                      # one flag each, with the model's help text
        assert f"--{part.replace('_', '-')} " in shown and " ".join(PART_HELP[part].split()) in shown


def test_sd15_controlnet_layout_from_the_cli_with_vae_dtype_device_and_budget(tiny_sd, other_vae, tmp_path):
    common = ["--model", "sd15-canny", "--base", tiny_sd["base"], "--controlnet", tiny_sd["controlnet"],
              "--device", "cpu", "-o", "mode=controlnet"]
    plain = generate(tmp_path, "plain", *common)
    b = plain["backend"]
    assert (b["model"], b["base"], b["controlnet"], b["vae"], b["dtype"]) == \
        ("sd15-canny", tiny_sd["base"], tiny_sd["controlnet"], None, "torch.float32")
    with_vae = generate(tmp_path, "vae", *common, "--vae", other_vae, "--dtype", "bfloat16", "--budget", "6_200")
    assert with_vae["backend"]["vae"] == other_vae and with_vae["backend"]["dtype"] == "torch.bfloat16"
    assert frames_of(with_vae) != frames_of(plain)  # the VAE given is the one that decoded
    assert with_vae["num_frames"] == 6


def test_the_budget_flag_refuses_a_request_before_any_model_loads(tiny_sd, tmp_path, capsys):
    code = cli_main(["generate", request_file(tmp_path), "--out", str(tmp_path / "o"), "--model", "sd15-canny",
                     "--base", tiny_sd["base"], "--budget", "6000"])
    err = capsys.readouterr().err
    assert code == 2 and "over the budget of 6,000" in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "video.json").exists()
    assert cli_main(["generate", request_file(tmp_path), "--out", str(tmp_path / "o"), "--budget", "-3"]) == 2
    assert "--budget='-3'" in capsys.readouterr().err


def test_animatediff_layout_from_the_cli(tiny_sd, tmp_path):
    manifest = generate(tmp_path, "anim", "--model", "animatediff", "--base", tiny_sd["base"],
                        "--motion-adapter", tiny_sd["motion_adapter"], "--strategy", "native")
    b = manifest["backend"]
    assert (b["family"], b["motion_adapter"], b["video_design"]) == ("animatediff", tiny_sd["motion_adapter"],
                                                                     "factorized")
    assert manifest["num_frames"] == 6


def test_wan_layout_from_the_cli_with_its_vae_from_a_pipeline_folder(tiny_wan, tmp_path):
    manifest = generate(tmp_path, "wan", "--model", tiny_wan, "--family", "wan", "--vae", tiny_wan,
                        "--strategy", "native")
    b = manifest["backend"]
    assert (b["family"], b["vae"], b["video_design"]) == ("wan", tiny_wan, "joint")
    preset = generate(tmp_path, "wan_preset", "--model", "wan2.2-ti2v-5b", "--base", tiny_wan, "--strategy", "native")
    assert frames_of(preset) == frames_of(manifest)  # the same weights, the VAE loaded on its own or not


def test_replay_makes_the_same_frames_from_the_manifest_alone(tiny_sd, tmp_path, capsys):
    generate(tmp_path, "first", "--model", "sd15-canny", "--base", tiny_sd["base"], "--controlnet",
             tiny_sd["controlnet"], "--dtype", "float32", "-o", "controlnet_conditioning_scale=0.7")
    capsys.readouterr()
    assert cli_main(["replay", str(tmp_path / "first" / "video.json"), "--out", str(tmp_path / "again")]) == 0
    assert "frames identical to the recorded ones" in capsys.readouterr().out
    first, again = (json.loads((tmp_path / d / "video.json").read_text()) for d in ("first", "again"))
    assert frames_of(first) == frames_of(again) and again["options"] == {"controlnet_conditioning_scale": 0.7}
    # in another dtype the numbers differ, and the command says why it could be
    assert cli_main(["replay", str(tmp_path / "first" / "video.json"), "--out", str(tmp_path / "bf16"),
                     "--dtype", "bfloat16"]) == 0
    assert "frames differ from the recorded ones: same weights" in capsys.readouterr().out


def test_replay_refuses_what_is_not_a_manifest_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.json").write_text("{}")
    for path in (tmp_path / "missing.json", tmp_path / "notes.json", tmp_path / "video.mp4"):
        assert cli_main(["replay", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("vidlab replay: manifest=") and err.count("\n") == 1


def test_a_retired_part_in_an_old_manifest_is_named():
    with pytest.raises(UserInputError, match="backend.motion_lora.*retired"):
        BackendSpec.from_record({"model": "x", "motion_lora": "/old/motion_lora"})


def test_a_missing_part_folder_or_bad_flag_is_one_line_before_anything_loads(tiny_sd, tmp_path, capsys):
    code = cli_main(["generate", request_file(tmp_path), "--out", str(tmp_path / "o"), "--model", "sd15-canny",
                     "--base", tiny_sd["base"], "--controlnet", "./no/such/controlnet"])
    err = capsys.readouterr().err
    assert code == 2 and "controlnet='./no/such/controlnet' is a path to no folder" in err
    assert "ControlNetModel folder or hub id" in err and err.count("\n") == 1
    assert cli_main(["generate", request_file(tmp_path), "--out", str(tmp_path / "o"), "--vae", ""]) == 2
    assert "--vae" in capsys.readouterr().err


def write_spec(tmp_path, backend: dict, **extra) -> str:
    spec = {"name": "tiny-backend", "strategy": "frame_chain",
            "base_request": {"prompt": PROMPT, "duration": 0.2, "fps": 15, "resolution": "32x32",
                             "num_inference_steps": 2},
            "options": {"mode": "controlnet"}, "axes": {"seed": [0, 1]}, "backend": backend, **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_a_sweep_backend_block_loads_the_parts_it_names(tiny_sd, tmp_path, capsys):
    from vidlab.sweeps import ResultsStore
    backend = {"model": "sd15-canny", "base": tiny_sd["base"], "controlnet": tiny_sd["controlnet"],
               "dtype": "float32", "device": "cpu"}
    spec = write_spec(tmp_path, backend)
    assert cli_main(["sweep", spec, "--check"]) == 0
    assert "2 points" in capsys.readouterr().out
    assert cli_main(["sweep", spec, "--store", str(tmp_path / "store"), "--no-progress"]) == 0
    store = ResultsStore(tmp_path / "store")
    assert list(store.table()["status"]) == ["ok", "ok"]
    assert (tmp_path / "store" / "summary.csv").exists() and (tmp_path / "store" / "summary.png").exists()
    configs = [m["config"] for m in store.manifests()]
    assert len(configs) == 2 and all(c["model"] == "sd15-canny" for c in configs)
    assert all(c["backend"] == {k: v for k, v in backend.items() if k != "model"} for c in configs)


def test_a_sweep_backend_block_is_checked_field_by_field(tiny_sd, tmp_path, capsys):
    bad = write_spec(tmp_path, {"model": "sd15-canny", "base": tiny_sd["base"], "controlnet": "./nope/cn"})
    assert cli_main(["sweep", bad, "--check"]) == 2
    assert "controlnet='./nope/cn' is a path to no folder" in capsys.readouterr().err
    half = write_spec(tmp_path, {"dtype": "half"})
    assert cli_main(["sweep", half, "--check"]) == 2
    err = capsys.readouterr().err
    assert "backend.dtype = 'half'" in err and "bfloat16" in err
    twice = write_spec(tmp_path, {"model": "sd15-canny"}, model="shapes-tiny")
    assert cli_main(["sweep", twice, "--check"]) == 2
    assert "disagree; give the model in one place" in capsys.readouterr().err


def test_a_plain_model_keeps_its_point_ids_and_a_backend_block_changes_them():
    from vidlab.sweeps.spec import SweepSpec, expand_grid
    base = dict(name="ids", base_request={"prompt": PROMPT}, strategy="frame_chain", axes={"seed": [0]})
    plain = expand_grid(SweepSpec(**base), "w")[0]
    same = expand_grid(SweepSpec(**base, backend={"model": "shapes-tiny"}), "w")[0]
    half = expand_grid(SweepSpec(**base, backend={"dtype": "bfloat16"}), "w")[0]
    assert "backend" not in plain.config and plain.point_id == same.point_id
    assert half.config["backend"] == {"dtype": "bfloat16"} and half.point_id != plain.point_id


def test_a_home_relative_part_is_expanded_as_a_shell_would():
    from pathlib import Path
    spec = BackendSpec(model="~/models/sd15", controlnet="~/models/canny", vae="org/vae")
    assert (spec.model, spec.controlnet, spec.vae) == (str(Path.home() / "models/sd15"),
                                                       str(Path.home() / "models/canny"), "org/vae")
