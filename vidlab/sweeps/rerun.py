"""Rerun a notebook headlessly with papermill, its parameters checked strictly first.

A notebook declares its parameters in the cell tagged `parameters`:

    alpha = 0.5          # control strength
    n = 3
    name = "x"
    seeds: list = [0, 1]

The declared type of a parameter is its annotation when it has one, else the type of its
default value (`0.5` -> float); a default that is not a literal (`np.pi`) or is `None`
without an annotation declares type "any". An unknown name or a value of the wrong type is
an error before any kernel starts (an int is accepted for a float). Values typed on the
command line arrive as text and are converted with `coerce_cli_value`.

>>> coerce_cli_value("0.5", "float"), coerce_cli_value("3", "int"), coerce_cli_value("true", "bool")
(0.5, 3, True)
>>> coerce_cli_value("[1, 2]", "list")
[1, 2]
"""
from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io.atomic import atomic_write_json

SIMPLE_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict, "tuple": tuple}
ANY = "any"
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


class ParameterError(UserError, ValueError):
    """Every bad notebook parameter at once: name, value received, what is allowed."""

    def __init__(self, notebook: str | Path, problems: list[tuple[str, Any, str]]):
        self.problems = problems
        lines = [f"  - {name} = {value!r}: {why}" for name, value, why in problems]
        super().__init__(f"{len(problems)} invalid parameter{'s' * (len(problems) != 1)} for notebook "
                         f"{notebook}:\n" + "\n".join(lines))


# ---- declared parameters --------------------------------------------------------------
def declared_parameters(notebook_path: str | Path) -> dict[str, dict]:
    """name -> {"type": "float" | "int" | ... | "float | None" | "any", "default": value, "help": text}.

    Read with `papermill.inspect_notebook`; a notebook without a cell tagged `parameters` is an error.
    """
    import nbformat
    import papermill

    notebook_path = Path(notebook_path)
    nb = nbformat.read(notebook_path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ParameterError(notebook_path, [("(notebook)", None, "has no cell tagged 'parameters'; tag the cell "
                                              "that assigns the parameters (View > Cell Toolbar > Tags)")])
    declared = {}
    for name, info in papermill.inspect_notebook(str(notebook_path)).items():
        default, literal = _literal(info["default"])
        declared[name] = {"type": _declared_type(info["inferred_type_name"], default, literal),
                          "default": default if literal else info["default"], "help": info.get("help", "")}
    return declared


def _literal(source: str) -> tuple[Any, bool]:
    try:
        return ast.literal_eval(source), True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, False


def _declared_type(annotation: str, default, literal: bool) -> str:
    """The type text from an annotation ('list[int]' -> 'list', 'Optional[float]' -> 'float | None')."""
    if annotation and annotation != "None":
        text = re.sub(r"^Optional\[(.*)\]$", r"\1 | None", annotation.replace("typing.", "").strip())
        parts = [re.sub(r"\[.*\]$", "", p.strip()) for p in text.split("|")]
        parts = ["None" if p in ("None", "NoneType") else p for p in parts]
        return " | ".join(parts) if all(p in SIMPLE_TYPES or p == "None" for p in parts) else ANY
    if not literal or default is None:
        return ANY
    name = type(default).__name__
    return name if name in SIMPLE_TYPES else ANY


# ---- checking and coercion ------------------------------------------------------------
def _type_names(declared_type: str | type) -> list[str]:
    if isinstance(declared_type, type):
        return [declared_type.__name__]
    return [p.strip() for p in declared_type.split("|")]


def value_matches(value, declared_type: str | type) -> bool:
    """True when `value` fits the declared type: exact for bool/int/str, int accepted for float, list for tuple."""
    for t in _type_names(declared_type):
        if t == ANY or (t == "None" and value is None):
            return True
        if t == "bool" and isinstance(value, bool):
            return True
        if t == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t in ("list", "tuple") and isinstance(value, (list, tuple)):
            return True
        if t in ("str", "dict") and isinstance(value, SIMPLE_TYPES[t]):
            return True
    return False


def check_parameters(notebook_path: str | Path, params: dict) -> dict[str, dict]:
    """Raise ParameterError for unknown names (listing the declared ones) and wrongly typed values.

    Returns the declared parameters, so a caller need not inspect the notebook twice.
    """
    declared = declared_parameters(notebook_path)
    problems = []
    for name, value in params.items():
        if name not in declared:
            problems.append((name, value, f"unknown parameter; declared: {sorted(declared)}"))
        elif not value_matches(value, declared[name]["type"]):
            problems.append((name, value, f"expected {declared[name]['type']}, got {type(value).__name__}"))
    if problems:
        raise ParameterError(notebook_path, problems)
    return declared


def coerce_cli_value(value_str: str, declared_type: str | type) -> Any:
    """Text from the command line -> a value of the declared type.

    "0.5" -> float, "3" -> int, "true"/"false" (also yes/no/1/0/on/off) -> bool, JSON for list/dict/tuple,
    "none"/"null" -> None where the type allows None; type "any": JSON when it parses, else the text.
    """
    names = _type_names(declared_type)
    if "None" in names and value_str.strip().lower() in ("none", "null"):
        return None
    errors = []
    for t in names:
        try:
            return _coerce_one(value_str, t)
        except ValueError as err:
            errors.append(str(err))
    raise ValueError(f"cannot read {value_str!r} as {' | '.join(names)}: {'; '.join(errors)}")


def _coerce_one(text: str, t: str):
    if t == "str":
        return text
    if t == "bool":
        if text.strip().lower() in _TRUE | _FALSE:
            return text.strip().lower() in _TRUE
        raise ValueError(f"bool must be one of {sorted(_TRUE | _FALSE)}")
    if t == "int":
        return int(text)
    if t == "float":
        return float(text)
    if t == ANY:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    if t in ("list", "tuple", "dict"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{t} must be given as JSON ({err})") from None
        if not isinstance(value, list if t != "dict" else dict):
            raise ValueError(f"JSON {text!r} is a {type(value).__name__}, not a {t}")
        return value
    raise ValueError(f"type {t!r} is not one of {sorted(SIMPLE_TYPES) + [ANY]}")


def coerce_cli_params(notebook_path: str | Path, pairs: list[tuple[str, str]]) -> dict:
    """[(name, text), ...] from `-p name value` -> typed values; unknown names and bad text in one error."""
    declared = declared_parameters(notebook_path)
    params, problems = {}, []
    for name, text in pairs:
        if name not in declared:
            problems.append((name, text, f"unknown parameter; declared: {sorted(declared)}"))
            continue
        try:
            params[name] = coerce_cli_value(text, declared[name]["type"])
        except ValueError as err:
            problems.append((name, text, str(err)))
    if problems:
        raise ParameterError(notebook_path, problems)
    return params


# ---- execution ------------------------------------------------------------------------
def rerun_notebook(notebook_path: str | Path, params: dict | None = None, out_dir: str | Path = "results/notebooks",
                   cwd: str | Path | None = None, kernel_name: str = "python3", output_name: str | None = None,
                   log_output: bool = False) -> Path:
    """Check `params`, execute the notebook with papermill, return the executed copy's path.

    The kernel's working directory is the notebook's own folder unless `cwd` is given, so the
    notebook's relative paths mean what they mean when it is opened in Jupyter. The executed
    copy is `<out_dir>/<output_name or notebook name>`; papermill records the injected values in
    its metadata (`metadata.papermill.parameters`) and in a cell tagged `injected-parameters`;
    `<name>.params.json` beside it records the notebook, the values, the defaults and the outcome.
    A failing cell raises papermill's PapermillExecutionError after the copy (with the error) is written.
    """
    import papermill

    notebook_path = Path(notebook_path).resolve()
    params = dict(params or {})
    declared = check_parameters(notebook_path, params)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / (output_name or notebook_path.name)
    record = {"notebook": str(notebook_path), "executed": str(output), "parameters": params,
              "defaults": {k: v["default"] for k, v in declared.items()}, "kernel_name": kernel_name,
              "cwd": str(Path(cwd) if cwd is not None else notebook_path.parent),
              "papermill": papermill.__version__, "started_at": _now()}
    try:
        papermill.execute_notebook(str(notebook_path), str(output), parameters=params, kernel_name=kernel_name,
                                   cwd=record["cwd"], log_output=log_output, progress_bar=False,
                                   kernel_manager_class=local_kernel_manager())
    except Exception as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}", finished_at=_now())
        raise
    else:
        record.update(status="ok", error=None, finished_at=_now())
    finally:
        atomic_write_json(output.with_suffix(".params.json"), record)
    return output


def local_kernel_manager():
    """The kernel manager a rerun starts its kernel with: on POSIX, one talking to the kernel over Unix
    sockets in Jupyter's runtime folder (IPC), so nothing listens on a TCP port and ipykernel has no
    unencrypted-TCP warning to print; elsewhere (Windows has no IPC transport) jupyter_client's default."""
    import os

    from jupyter_client.manager import AsyncKernelManager
    if os.name != "posix":
        return AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

    return IPCKernelManager


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
