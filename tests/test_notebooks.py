"""The notebooks run headlessly with papermill, strictly checked parameters, and record their results."""
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from vidlab.backends import ZOO_PATH
from vidlab.sweeps import rerun_notebook
from vidlab.io import read_mp4

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

pytestmark = pytest.mark.skipif(not (ZOO_PATH / "controlnet").exists(), reason="zoo not exported")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_valid_and_unexecuted(path):
    """Every cell has its id (nbformat 4.5: a missing one is a warning today, an error later) and no
    output or execution count: executed copies belong in a run's out_dir, not in the repository."""
    raw = json.loads(path.read_text())  # as committed: nbformat.read fills missing ids in
    assert [i for i, cell in enumerate(raw["cells"]) if "id" not in cell] == []
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [c.execution_count for c in code] == [None] * len(code) and all(c.outputs == [] for c in code)


def test_quickstart_notebook_writes_video_metrics_and_plot(tmp_path):
    out = tmp_path / "quickstart"
    executed = rerun_notebook(NOTEBOOKS / "01_quickstart.ipynb",
                              {"out_dir": str(out), "duration": 0.5, "seed": 3}, out_dir=tmp_path / "nb")
    assert executed.exists() and (tmp_path / "nb" / "01_quickstart.params.json").exists()
    frames, fps = read_mp4(out / "video.mp4")
    assert frames.shape == (8, 3, 64, 64) and fps == pytest.approx(16)
    metrics = pd.read_csv(out / "metrics.csv").set_index("metric")["value"]
    assert 0 < float(metrics["ssim_consecutive"]) <= 1 and 0 < float(metrics["flicker"]) <= 1
    assert "classical-flow proxy" in metrics["warp_error_label"]
    per_frame = pd.read_csv(out / "frames.csv")
    assert len(per_frame) == 8 and per_frame["ssim_anchor"].iloc[0] == pytest.approx(1.0)
    assert (out / "metrics.png").stat().st_size > 5000
    # what a reader sees: the video inline, the figures as images, the controls shown but not run
    cells = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    shown = {c.source.splitlines()[-1]: [set(o.get("data", {})) for o in c.outputs] for c in cells if c.source}
    assert any('<video' in o.get("data", {}).get("text/html", "") for c in cells for o in c.outputs)
    assert {"image/png"} <= shown["frame_strip(video.frames, title=request.full_prompt())"][0]
    assert shown["controls(explore, prompt=prompt, strategy=strategy, seed=seed)"] == [
        {"application/vnd.jupyter.widget-view+json", "text/plain"}]


def test_quickstart_rejects_unknown_and_mistyped_parameters(tmp_path):
    from vidlab.sweeps import ParameterError
    with pytest.raises(ParameterError, match="colour"):
        rerun_notebook(NOTEBOOKS / "01_quickstart.ipynb", {"colour": "red"}, out_dir=tmp_path)
    with pytest.raises(ParameterError, match="seed"):
        rerun_notebook(NOTEBOOKS / "01_quickstart.ipynb", {"seed": "seven"}, out_dir=tmp_path)


def test_quickstart_prints_the_command_that_opens_the_notebook_in_jupyterlab(tmp_path, monkeypatch, capsys):
    """The README's promise; tests/test_browser.py starts JupyterLab with this same command."""
    import shlex

    import vidlab.sweeps
    from vidlab.quickstart import lab_command, main

    def fake_rerun(notebook, parameters, out_dir):  # the notebook's run is tested above
        Path(parameters["out_dir"], "paths.json").write_text('{"video": "v.mp4"}')
        return Path(out_dir) / Path(notebook).name

    monkeypatch.setattr(vidlab.sweeps, "rerun_notebook", fake_rerun)
    assert main(["--notebook", str(NOTEBOOKS / "01_quickstart.ipynb"), "--out", str(tmp_path)]) == 0
    command = lab_command(NOTEBOOKS / "01_quickstart.ipynb")
    assert f"open the notebook in JupyterLab: {shlex.join(command)}" in capsys.readouterr().out
    assert command[1:3] == ["lab", str(NOTEBOOKS / "01_quickstart.ipynb")] and Path(command[0]).name == "jupyter"


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_papermill_parameter_has_a_help_text(notebook):
    """`papermill --help-notebook` shows each parameter's inline comment as its help."""
    import papermill
    parameters = papermill.inspect_notebook(str(notebook))
    assert parameters and {name: p["help"] for name, p in parameters.items() if not p["help"].strip()} == {}
