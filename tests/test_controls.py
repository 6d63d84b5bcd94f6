"""The notebooks' controls without a browser: widgets built from the parameters, a click runs with the
widgets' values, the output area gets an inline video and a PNG plot, errors name the field."""
import base64
import re

import ipywidgets as widgets
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from vidlab.backends import ZOO_PATH
from vidlab.strategies import STRATEGIES
from vidlab.strategies.events import Progress
from vidlab.video import Video
from vidlab.viz.controls import controls, displayable, parse_seeds, point_video

PROMPT = "a red circle in the center on a white background"


def html_outputs(panel) -> list[str]:
    return [o["data"]["text/html"] for o in panel.output.outputs if "text/html" in o.get("data", {})]


def png_outputs(panel) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in panel.output.outputs
            if "image/png" in o.get("data", {})]


def video_bytes(page: str) -> bytes:
    """The MP4 embedded in a <video> element's data URI."""
    match = re.search(r'<video[^>]*>\s*<source src="data:video/mp4;base64,([A-Za-z0-9+/=]+)"', page)
    assert match, page[:200]
    return base64.b64decode(match.group(1))


def fake_run(calls):
    """A run that records its values, sends two progress events and returns a video (frames from the seed) and a plot."""
    def run(prompt, strategy, control_strength, seeds, segments, seed, progress):
        calls.append(dict(prompt=prompt, strategy=strategy, control_strength=control_strength, seeds=seeds,
                          segments=segments, seed=seed))
        bar = Progress(strategy, "segment", total=segments, callback=progress)
        for i in range(segments):
            bar.done(i, torch.zeros(3, 8, 8))
        frames = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
        fig = Figure()
        fig.subplots().plot(seeds, [control_strength] * len(seeds))
        return [Video(frames, 16, {}), fig, None]
    return run


def test_every_parameter_gets_its_widget_with_the_given_value():
    panel = controls(lambda **_: None, prompt=PROMPT, strategy="segment_chain", control_strength=1.25,
                     seeds=[0, 3], segments=4, seed=7)
    kinds = {name: type(w) for name, w in panel.widgets.items()}
    assert kinds == {"prompt": widgets.Text, "strategy": widgets.Dropdown, "control_strength": widgets.FloatSlider,
                     "seeds": widgets.Text, "segments": widgets.IntSlider, "seed": widgets.BoundedIntText}
    assert list(panel.widgets["strategy"].options) == sorted(STRATEGIES)
    assert panel.values() == {"prompt": PROMPT, "strategy": "segment_chain", "control_strength": 1.25,
                              "seeds": [0, 3], "segments": 4, "seed": 7}
    assert panel.output.outputs == ()  # nothing runs on building or display
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "Run" in bundle["text/plain"]


def test_a_click_runs_with_the_changed_values_and_shows_video_and_plot():
    calls = []
    panel = controls(fake_run(calls), prompt=PROMPT, strategy="frame_chain", control_strength=1.0, seeds=[0],
                     segments=2, seed=1)
    panel.widgets["strategy"].value = "native"
    panel.widgets["control_strength"].value = 0.5
    panel.widgets["seeds"].value = "4, 5,6"
    panel.widgets["segments"].value = 3
    panel.button.click()
    assert calls == [dict(prompt=PROMPT, strategy="native", control_strength=0.5, seeds=[4, 5, 6], segments=3,
                          seed=1)]
    pages, pngs = html_outputs(panel), png_outputs(panel)
    assert len(pages) == 1 and len(pngs) == 1  # the None result shows nothing
    assert video_bytes(pages[0])[4:8] == b"ftyp"  # an MP4
    assert pngs[0][:8] == b"\x89PNG\r\n\x1a\n"
    # the bar followed the run's events, then shows it done
    assert (panel.progress.value, panel.progress.max, panel.progress.bar_style) == (3, 3, "success")

    # a second click with another seed replaces the output with another video
    first = video_bytes(pages[0])
    panel.widgets["seed"].value = 2
    panel.button.click()
    assert len(html_outputs(panel)) == 1 and video_bytes(html_outputs(panel)[0]) != first
    assert [c["seed"] for c in calls] == [1, 2]


def test_a_run_without_progress_argument_is_called_without_it():
    seen = []
    panel = controls(lambda prompt: seen.append(prompt) or pd.DataFrame({"prompt": [prompt]}), prompt=PROMPT)
    panel.widgets["prompt"].value = "a blue square"
    panel.button.click()
    assert seen == ["a blue square"]
    assert "a blue square" in html_outputs(panel)[0]  # a table shows as IPython shows it
    assert (panel.progress.value, panel.progress.bar_style) == (1, "success")


def test_a_failing_run_shows_the_error_in_the_panel_naming_the_field():
    calls = []
    panel = controls(fake_run(calls), prompt=PROMPT, strategy="frame_chain", control_strength=1.0, seeds=[0],
                     segments=2, seed=1)
    panel.widgets["seeds"].value = "0, one"
    panel.button.click()
    assert calls == []
    [error] = panel.output.outputs
    assert error["output_type"] == "error" and error["ename"] == "ValueError"
    assert "seeds='0, one'" in error["evalue"] and "integers >= 0 separated by commas" in error["evalue"]
    assert panel.progress.bar_style == "danger" and not panel.button.disabled


@pytest.mark.parametrize("kwargs, message", [
    ({"colour": "red"}, r"\['colour'\] are not parameters"),
    ({}, "at least one of"),
    ({"strategy": "frame-chain"}, r"strategy='frame-chain' is not allowed: it must be one of \['frame_chain'"),
    ({"control_strength": 2.5}, r"control_strength=2.5 is not allowed: it must be in \[0.0, 2.0\]"),
    ({"segments": 0}, r"segments=0 is not allowed: it must be in \[1, 8\]"),
    ({"seed": -1}, r"seed=-1 is not allowed"),
    ({"seeds": "0, 1"}, r"seeds='0, 1' is not allowed: it must be a non-empty list of integers >= 0"),
    ({"seeds": []}, r"seeds=\[\] is not allowed"),
    ({"prompt": None}, r"prompt=None is not allowed: it must be a string"),
])
def test_controls_refuse_unknown_parameters_and_values_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        controls(lambda **_: None, **kwargs)


def test_parse_seeds():
    assert parse_seeds("0") == [0] and parse_seeds(" 3, 1 ,2, ") == [3, 1, 2]
    for bad in ("", "-1", "1.5", "1;2", "a"):
        with pytest.raises(ValueError, match="seeds="):
            parse_seeds(bad)


def test_displayable_embeds_an_mp4_file_and_passes_other_objects(tmp_path):
    frames = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    path = Video(frames, 16, {}).save(tmp_path / "v.mp4")
    page = displayable(path).data
    assert video_bytes(page) == path.read_bytes() and "controls" in page
    assert displayable("just text") == "just text"


def test_point_video_finds_the_ok_point_with_these_axis_values(tmp_path):
    class Study:
        store_dir = tmp_path
        table = pd.DataFrame({"seed": [0, 0, 1], "options.num_segments": [2, 4, 4], "status": ["ok", "ok", "error"],
                              "point_id": ["a", "b", "c"]})

    assert point_video(Study, seed=0, **{"options.num_segments": 4}) == tmp_path / "points" / "b" / "video.mp4"
    assert point_video(Study, seed=1) is None  # failed
    with pytest.raises(ValueError, match=r"\['colour'\] are not columns"):
        point_video(Study, colour="red")


@pytest.mark.skipif(not (ZOO_PATH / "controlnet").exists(), reason="zoo not exported")
def test_a_click_generates_on_the_zoo_and_the_bar_counts_its_frames():
    import vidlab
    from vidlab.quickstart import per_frame_table
    from vidlab.viz import plot_frame_metrics

    def explore(prompt, strategy, seed, progress):
        request = vidlab.GenerationRequest(prompt=prompt, duration=0.25, fps=16, seed=seed, num_inference_steps=4)
        video = vidlab.generate(request, strategy=strategy, model="shapes-tiny", callback=progress)
        return [video, plot_frame_metrics(per_frame_table(video))]

    panel = controls(explore, prompt=PROMPT, strategy="frame_chain", seed=0)
    [video, _] = panel.run()
    assert video.record["request"]["seed"] == 0 and video.num_frames == 4
    assert (panel.progress.value, panel.progress.max, panel.progress.description) == (4, 4, "done")
    assert video_bytes(html_outputs(panel)[0])[4:8] == b"ftyp" and len(png_outputs(panel)) == 1
    panel.widgets["seed"].value = 5
    [again, _] = panel.run()
    assert again.record["request"]["seed"] == 5 and not torch.equal(again.frames, video.frames)


def test_a_metric_band_stays_within_what_the_metric_can_take_and_its_axis_names_the_unit():
    """An SSIM band whose upper bound is 1.006 (mean + CI half-width) is drawn up to 1, PSNR's axis says dB."""
    import pandas as pd
    from vidlab.sweeps.plots import plot_metric_curves
    curves = pd.DataFrame({"metric": ["ssim_anchor"] * 2 + ["psnr_anchor"] * 2, "x": [0, 1, 0, 1],
                           "mean": [0.99, 0.98, 30.0, 29.0], "ci_low": [0.97, 0.95, 28.0, 27.0],
                           "ci_high": [1.006, 1.01, 32.0, 31.0]})
    fig = plot_metric_curves(curves, "x")
    ssim_ax, psnr_ax = fig.axes[:2]
    band = ssim_ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() <= 1.0 and band[:, 1].min() >= 0.95 - 1e-9
    assert psnr_ax.collections[0].get_paths()[0].vertices[:, 1].max() == 32.0
    assert ssim_ax.get_ylabel() == "SSIM, 1 = identical" and psnr_ax.get_ylabel() == "PSNR (dB)"
