"""Controls for a notebook: a widget per run parameter, a Run button, a progress bar and an output area.

`controls(run, prompt=..., strategy=..., seed=...)` builds the panel; nothing runs until Run is
clicked, so a headless run (papermill) displays it and does no work. A click reads the widgets,
calls `run(**values)` (plus `progress=...` when `run` takes it) and shows what it returns in the
panel's output area:

- a `Video`                  -> inline HTML5 video (the MP4 embedded as a base64 data URI);
- a path to an `.mp4` file   -> the same, of that file;
- a matplotlib `Figure`      -> a PNG image;
- None                       -> nothing; anything else is displayed as IPython would.

`progress` is a strategy callback: pass it on (`vidlab.generate(..., callback=progress)`) and the
bar follows the video frame by frame, segment by segment or window by window. What the run displays
itself while it works (a sweep's tqdm bar: `run_study(..., progress=True)`) shows in the output area.

The parameters and their widgets (give the ones the notebook uses):

| parameter          | widget         | value the run receives                  |
|--------------------|----------------|-----------------------------------------|
| `prompt`           | Text           | str                                     |
| `strategy`         | Dropdown       | a key of `vidlab.strategies.STRATEGIES` |
| `control_strength` | FloatSlider    | float in [0, max_control_strength]      |
| `seed`             | BoundedIntText | int >= 0                                |
| `seeds`            | Text "0, 1"    | list of ints >= 0                       |
| `segments`         | IntSlider      | int in [1, max_segments]                |

>>> def run(prompt, seed, progress):
...     return vidlab.generate({"prompt": prompt, "seed": seed, "duration": 0.25}, callback=progress)
>>> panel = controls(run, prompt="a red circle in the center on a white background", seed=0)  # doctest: +SKIP
>>> panel.widgets["seed"].value = 7; panel.button.click()                                     # doctest: +SKIP
>>> [o["data"].keys() for o in panel.output.outputs]                                         # doctest: +SKIP
[dict_keys(['text/plain', 'text/html'])]
"""
from __future__ import annotations

import inspect
import io
import re
import traceback
from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure

from ..strategies import STRATEGIES
from ..strategies.events import StrategyEvent
from ..video import Video

PARAMETERS = ("prompt", "strategy", "control_strength", "seed", "seeds", "segments")
SEEDS_PATTERN = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*,?\s*$")


class Controls:
    """The panel (see the module docstring): `widgets` by parameter name, `button`, `progress`, `output`."""

    def __init__(self, run: Callable, values: dict, max_control_strength: float = 2.0, max_segments: int = 8):
        import ipywidgets as widgets

        # 1. check inputs: known parameters, values the widgets can hold
        unknown = sorted(set(values) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"{unknown} are not parameters the controls know; allowed: {list(PARAMETERS)}")
        if not values:
            raise ValueError(f"controls need at least one of {list(PARAMETERS)}")
        check_value("strategy", values.get("strategy"), STRATEGIES)
        check_range("control_strength", values.get("control_strength"), 0.0, max_control_strength)
        check_range("segments", values.get("segments"), 1, max_segments)
        check_range("seed", values.get("seed"), 0, 2**32 - 1)
        if "prompt" in values and not isinstance(values["prompt"], str):
            raise ValueError(f"prompt={values['prompt']!r} is not allowed: it must be a string")
        seeds = values.get("seeds", [0])
        if not (isinstance(seeds, (list, tuple)) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
            raise ValueError(f"seeds={seeds!r} is not allowed: it must be a non-empty list of integers >= 0")

        # 2. one widget per parameter
        style = {"description_width": "initial"}
        make = {
            "prompt": lambda v: widgets.Text(value=v, description="prompt", style=style,
                                             layout=widgets.Layout(width="95%")),
            "strategy": lambda v: widgets.Dropdown(options=sorted(STRATEGIES), value=v, description="strategy",
                                                   style=style),
            "control_strength": lambda v: widgets.FloatSlider(value=v, min=0.0, max=max_control_strength,
                                                              step=0.05, description="control strength",
                                                              continuous_update=False, style=style),
            "seed": lambda v: widgets.BoundedIntText(value=v, min=0, max=2**32 - 1, description="seed",
                                                     style=style),
            "seeds": lambda v: widgets.Text(value=", ".join(str(s) for s in v), description="seeds",
                                            placeholder="0, 1, 2", style=style),
            "segments": lambda v: widgets.IntSlider(value=v, min=1, max=max_segments, description="segments",
                                                    continuous_update=False, style=style),
        }
        self.run_fn = run
        self.widgets = {name: make[name](value) for name, value in values.items()}
        self.button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="idle", style=style)
        self.output = widgets.Output()
        self.button.on_click(self.run)
        self.panel = widgets.VBox([*self.widgets.values(), widgets.HBox([self.button, self.progress]), self.output])

    # ---- reading the widgets ------------------------------------------------------------------
    def values(self) -> dict:
        """The widgets' values as the run receives them (seeds parsed into a list of ints)."""
        out = {name: widget.value for name, widget in self.widgets.items()}
        if "seeds" in out:
            out["seeds"] = parse_seeds(out["seeds"])
        return out

    # ---- running ------------------------------------------------------------------------------
    def on_event(self, event: StrategyEvent) -> None:
        """The strategy callback handed to the run: the bar shows the unit done of the video's total."""
        self.progress.max = event.total
        self.progress.value = event.index + 1
        self.progress.description = f"{event.unit} {event.index + 1}/{event.total}"

    def run(self, _button=None) -> list:
        """Run with the widgets' values; show the results (or the error) in the output area; return them."""
        self.output.outputs = ()
        self.button.disabled = True
        self.progress.value, self.progress.bar_style, self.progress.description = 0, "", "running"
        items, failure = [], None
        with self.output:  # what the run displays itself (a sweep's tqdm bar) lands in the panel
            try:
                values = self.values()
                if "progress" in inspect.signature(self.run_fn).parameters:
                    values["progress"] = self.on_event
                result = self.run_fn(**values)
                items = list(result) if isinstance(result, (list, tuple)) else [result]
                shown = [displayable(item) for item in items if item is not None]
            except Exception as error:  # a click has no cell to raise into: the error goes in the panel
                failure = error
        if failure is None:
            for item in shown:
                self.output.append_display_data(item)
            self.progress.value, self.progress.bar_style = self.progress.max, "success"
            self.progress.description = "done"
        else:
            self.output.outputs += ({"output_type": "error", "ename": type(failure).__name__,
                                     "evalue": str(failure), "traceback": traceback.format_exception(failure)},)
            self.progress.bar_style, self.progress.description = "danger", "failed"
        self.button.disabled = False
        return items

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.panel._repr_mimebundle_(include=include, exclude=exclude)
        bundle["text/plain"] = (f"controls over {list(self.widgets)}: open the notebook in JupyterLab, "
                                "change a value and click Run")
        return bundle


def controls(run: Callable, max_control_strength: float = 2.0, max_segments: int = 8, **values) -> Controls:
    """A panel of widgets for `run`'s parameters (see the module docstring); nothing runs until Run is clicked."""
    return Controls(run, values, max_control_strength=max_control_strength, max_segments=max_segments)


def displayable(item):
    """What the output area shows for a run's result: a Video or an MP4 path as inline video, a Figure as PNG."""
    from IPython.display import Image

    from ..io import display_video

    if isinstance(item, Video):
        return item.display()
    if isinstance(item, (str, Path)) and Path(item).suffix == ".mp4":
        return display_video(item)
    if isinstance(item, Figure):
        buffer = io.BytesIO()
        item.savefig(buffer, format="png", dpi=100)
        return Image(data=buffer.getvalue(), format="png")
    return item


def parse_seeds(text: str) -> list[int]:
    """'0, 1, 2' -> [0, 1, 2]; anything else is an error naming the field, the value and what is allowed."""
    if not SEEDS_PATTERN.match(text):
        raise ValueError(f"seeds={text!r} is not allowed: seeds are integers >= 0 separated by commas, "
                         f"e.g. '0, 1, 2'")
    return [int(s) for s in text.split(",") if s.strip()]


def check_value(name: str, value, allowed) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed: it must be one of {sorted(allowed)}")


def check_range(name: str, value, low, high) -> None:
    if value is not None and not low <= value <= high:
        raise ValueError(f"{name}={value!r} is not allowed: it must be in [{low}, {high}]")


def point_video(run, **axis_values) -> Path | None:
    """The MP4 of a study's point with these axis values (`run`: a `StudyRun`); None if none ran ok.

    >>> point_video(study, seed=0, **{"options.num_segments": 4})  # doctest: +SKIP
    PosixPath('results/03_segment_decay/store/points/3f2a.../video.mp4')
    """
    from ..sweeps.store import VIDEO

    unknown = sorted(a for a in axis_values if a not in run.table.columns)
    if unknown:
        raise ValueError(f"{unknown} are not columns of the study's table {list(run.table.columns)}")
    rows = run.table
    for axis, value in axis_values.items():
        rows = rows[rows[axis] == value]
    rows = rows[rows["status"] == "ok"]
    return Path(run.store_dir, "points", rows["point_id"].iloc[0], VIDEO) if len(rows) else None
