"""Each notebook's Explore controls, clicked inside the notebook's own kernel (no browser).

The notebook runs headlessly with papermill and tiny parameters, plus one cell appended here that
takes the displayed panel (`_`, the last cell's result), changes one widget, runs it as a click
would, and prints what the panel's output area received. The browser test does the same for the
quickstart through JupyterLab and Chromium.
"""
import json
import os
from pathlib import Path

import nbformat
import pytest

from vidlab.backends import ZOO_PATH
from vidlab.sweeps import rerun_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CLICK = """panel = _
panel.widgets[{name!r}].value = {value!r}
items = panel.run()
print(json.dumps({{"state": panel.progress.description, "video": str(items[0]),
                  "errors": [o.get("evalue") for o in panel.output.outputs if o["output_type"] == "error"],
                  "outputs": [sorted(o.get("data", {{}})) for o in panel.output.outputs],
                  "videos": sum("<video" in o.get("data", {{}}).get("text/html", "") for o in panel.output.outputs)}}))
"""

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (ZOO_PATH / "controlnet").exists(), reason="zoo not exported")]


@pytest.fixture(autouse=True)
def kernel_threads(monkeypatch):
    """The notebook's kernel is another process: give it the test suite's thread budget."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get("VIDLAB_TEST_THREADS", "2"))


def click(tmp_path, notebook: str, parameters: dict, name: str, value) -> dict:
    """Run the notebook with `parameters`, set the controls' widget `name` to `value`, run them: what the
    panel showed, and how many inline videos the headless cells showed."""
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    assert nb.cells[-1].source.splitlines()[-1].startswith("controls(")  # the Explore cell ends the notebook
    nb.cells.append(nbformat.v4.new_code_cell("import json\n" + CLICK.format(name=name, value=value)))
    copy = tmp_path / notebook
    nbformat.write(nb, copy)
    executed = rerun_notebook(copy, {**parameters, "out_dir": str(tmp_path / "out")}, out_dir=tmp_path / "nb")
    *cells, last = nbformat.read(executed, as_version=4).cells
    printed = "".join(o.get("text", "") for o in last.outputs if o.get("name") == "stdout")
    headless = sum("<video" in o.get("data", {}).get("text/html", "") for c in cells for o in c.get("outputs", []))
    return {**json.loads(printed.strip().splitlines()[-1]), "headless_videos": headless}


def test_control_strength_controls_add_a_strength_and_show_its_video_and_plots(tmp_path):
    shown = click(tmp_path, "02_control_strength_sweep.ipynb",
                  {"control_strengths": [0.0, 1.5], "seeds": [0], "num_frames": 4, "change_at_frame": 2,
                   "num_inference_steps": 2}, "control_strength", 0.75)
    assert shown["errors"] == [] and shown["state"] == "done"
    assert shown["video"].endswith("video.mp4") and shown["videos"] == shown["headless_videos"] == 1
    assert len([o for o in shown["outputs"] if "image/png" in o]) == 2  # curves, freeze vs flicker


# notebooks 03 and 04 run segment_chain at 6 steps: its img2img (strength 0.3) at 2 steps leaves no step
def test_segment_decay_controls_add_a_segment_count(tmp_path):
    shown = click(tmp_path, "03_segment_decay.ipynb",
                  {"segment_counts": [1, 2], "seeds": [0], "frames_per_segment": 2, "num_inference_steps": 6},
                  "segments", 3)
    assert shown["errors"] == [] and shown["state"] == "done"
    assert shown["video"].endswith("video.mp4") and shown["videos"] == shown["headless_videos"] == 1
    assert len([o for o in shown["outputs"] if "image/png" in o]) == 2  # decay curves, beside seed 001


def test_strategy_controls_run_another_strategy(tmp_path):
    shown = click(tmp_path, "04_strategy_comparison.ipynb",
                  {"strategies": ["frame_chain"], "seeds": [0], "num_frames": 4, "num_inference_steps": 6,
                   "strategy_options": {}, "prompts": ["a red circle in the top left on a white background"],
                   "decay_frames": 8, "decay_window": 4, "decay_overlap": 2, "decay_seeds": [0]},
                  "strategy", "segment_chain")
    assert shown["errors"] == [] and shown["state"] == "done"
    assert shown["video"].endswith("video.mp4") and shown["videos"] == shown["headless_videos"] == 1
    assert ["text/html", "text/plain"] in shown["outputs"]  # the summary row
    assert len([o for o in shown["outputs"] if "image/png" in o]) == 1  # the per-frame decay


def test_attention_controls_draw_the_heat_maps_of_another_seed(tmp_path):
    shown = click(tmp_path, "05_attention_maps.ipynb", {"num_inference_steps": 2, "num_frames": 2}, "seed", 5)
    assert shown["errors"] == [] and shown["state"] == "done"
    assert shown["outputs"] == [["image/png", "text/plain"]] and shown["videos"] == 0
