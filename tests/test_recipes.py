"""Every shipped part's recipe runs from a clean checkout: each command for one step, on small data,
exporting into a temporary zoo (the packaged one is never written). No training to speak of."""
import json

import pytest

from vidlab.backends import ZOO_PATH
from vidlab.training.recipe import command_args, load_recipe, main, recipe_names, run_recipe, shell_lines

SHIPPED = {"image", "refine", "video-unet", "joint-decoder", "joint-frames", "joint-clips", "joint-clips-centre",
           "joint-clips-placed", "joint-clips-shapes", "joint-frames-shift", "joint-frames-shift-more", "joint-clips-shift",
           "joint-frames-shift-8k", "joint-clips-shift-again", "joint-decoder-more",
           "joint-frames-shift-8k-more", "joint-clips-shape-weight", "joint-clips-shape-weight-more",
           "joint-decoder-deeper", "joint-decoder-again", "joint-frames-corners", "joint-clips-corners",
           "joint-decoder-third", "joint-decoder-fourth"}


def test_every_shipped_part_has_a_recipe_and_each_builds_on_one_that_exists():
    assert set(recipe_names()) == SHIPPED
    for name in recipe_names():
        recipe = load_recipe(name)
        assert recipe.ships and recipe.about and recipe.commands
        assert recipe.builds_on is None or recipe.builds_on in SHIPPED


def test_show_prints_runnable_lines_with_every_value_spelt_out(capsys):
    main(["show", "joint-clips-placed"])
    out = capsys.readouterr().out
    assert ("python -m vidlab.training.joint clips --steps 10000 --monitor-every 1000 --centre-share 0.5 "
            "--frame-share 0.4 --first-share 0.75 --run-dir checkpoints/joint-clips-placed") in out
    assert "export clips --out vidlab/zoo/shapes-tiny" in out
    with pytest.raises(ValueError, match="recipe='nope' is not one of"):
        load_recipe("nope")


def test_a_smoke_run_counts_steps_per_stage_and_needs_its_own_zoo(tmp_path):
    recipe = load_recipe("joint-clips-centre")
    steps = [args[args.index("--steps") + 1] for _, args in command_args(recipe, "r", "z", smoke=True)
             if "--steps" in args]
    assert steps == ["1", "2"]  # the resumed stage takes one step more
    assert all(line.endswith("--run-dir checkpoints/joint-clips-centre") for line in shell_lines(recipe))
    with pytest.raises(ValueError, match="never the packaged zoo"):
        run_recipe("image", str(tmp_path), smoke=True)


def zoo_files():
    return {p: p.stat().st_mtime_ns for p in ZOO_PATH.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_recipe_runs_one_step_each_into_a_zoo_of_its_own(name, tmp_path):
    before = zoo_files()
    run_recipe(name, str(tmp_path / "run"), zoo=str(tmp_path / "zoo"), smoke=True)
    assert zoo_files() == before
    trained = [args for _, args in command_args(load_recipe(name), "r", "z", smoke=True) if "--steps" in args]
    progress = [json.loads(p.read_text())["step"] for p in (tmp_path / "run").rglob("progress.json")]
    assert progress and max(progress) == max(int(a[a.index("--steps") + 1]) for a in trained)
    assert list((tmp_path / "zoo").rglob("*.safetensors"))  # its export wrote weights
