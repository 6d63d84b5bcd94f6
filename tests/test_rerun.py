"""Tests for vidlab.sweeps.rerun: strict notebook parameters, CLI coercion, one real papermill run.

Only `test_rerun_executes_with_injected_parameters` starts a kernel (a few seconds); every other
test inspects notebooks without executing them.
"""
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from vidlab.sweeps import (ParameterError, check_parameters, coerce_cli_params, coerce_cli_value,
                                declared_parameters, rerun_main, rerun_notebook)

TINY = Path(__file__).parent / "data" / "tiny_params.ipynb"


def write_notebook(path: Path, parameters_source: str, tagged: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters_source)
    if tagged:
        cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print('hello')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_declared_parameters_types_defaults_and_help():
    declared = declared_parameters(TINY)
    assert declared == {
        "alpha": {"type": "float", "default": 0.5, "help": "control strength"},
        "n": {"type": "int", "default": 3, "help": "number of segments"},
        "name": {"type": "str", "default": "x", "help": ""},
    }


def test_annotations_declare_types(tmp_path):
    nb = write_notebook(tmp_path / "ann.ipynb",
                        "seeds: list[int] = [0, 1]\nscale: Optional[float] = None\nfree = None\nobj = np.pi\n"
                        "flag = False")
    types = {k: v["type"] for k, v in declared_parameters(nb).items()}
    assert types == {"seeds": "list", "scale": "float | None", "free": "any", "obj": "any", "flag": "bool"}
    check_parameters(nb, {"seeds": [3], "scale": None, "free": {"a": 1}, "obj": "anything", "flag": True})
    with pytest.raises(ParameterError, match=r"scale = 'big': expected float \| None, got str"):
        check_parameters(nb, {"scale": "big"})


def test_unknown_parameter_names_it_and_lists_declared():
    with pytest.raises(ParameterError) as info:
        check_parameters(TINY, {"alpah": 0.7, "n": 4})
    message = str(info.value)
    assert "1 invalid parameter" in message
    assert "alpah = 0.7: unknown parameter; declared: ['alpha', 'n', 'name']" in message
    assert info.value.problems[0][0] == "alpah"


@pytest.mark.parametrize("params, bad", [
    ({"n": 2.5}, "n = 2.5: expected int, got float"),
    ({"n": True}, "n = True: expected int, got bool"),
    ({"alpha": "0.5"}, "alpha = '0.5': expected float, got str"),
    ({"alpha": False}, "alpha = False: expected float, got bool"),
    ({"name": 3}, "name = 3: expected str, got int"),
])
def test_wrong_type_is_an_error(params, bad):
    with pytest.raises(ParameterError) as info:
        check_parameters(TINY, params)
    assert bad in str(info.value)


def test_int_accepted_for_float_and_all_errors_reported_at_once():
    assert set(check_parameters(TINY, {"alpha": 2, "n": 5, "name": "y"})) == {"alpha", "n", "name"}
    with pytest.raises(ParameterError) as info:
        check_parameters(TINY, {"n": "3", "bogus": 1})
    assert [p[0] for p in info.value.problems] == ["n", "bogus"]


@pytest.mark.parametrize("text, declared, expected", [
    ("0.5", "float", 0.5), ("3", "float", 3.0), ("3", "int", 3), ("-7", int, -7),
    ("true", "bool", True), ("False", "bool", False), ("yes", "bool", True), ("0", "bool", False),
    ("hello world", "str", "hello world"), ("3", "str", "3"),
    ("[1, 2.5]", "list", [1, 2.5]), ('{"a": 1}', "dict", {"a": 1}),
    ("none", "float | None", None), ("1.5", "float | None", 1.5),
    ("[1]", "any", [1]), ("plain", "any", "plain"),
])
def test_coerce_cli_value(text, declared, expected):
    value = coerce_cli_value(text, declared)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text, declared", [("2.5", "int"), ("abc", "float"), ("maybe", "bool"),
                                            ("1, 2", "list"), ('{"a": 1}', "list"), ("none", "float")])
def test_coerce_cli_value_rejects_bad_text(text, declared):
    with pytest.raises(ValueError, match=f"cannot read {text!r} as {declared}"):
        coerce_cli_value(text, declared)


def test_coerce_cli_params_uses_declared_types():
    assert coerce_cli_params(TINY, [("alpha", "0.25"), ("n", "4"), ("name", "4")]) == \
        {"alpha": 0.25, "n": 4, "name": "4"}
    with pytest.raises(ParameterError) as info:
        coerce_cli_params(TINY, [("n", "four"), ("beta", "1")])
    assert [p[0] for p in info.value.problems] == ["n", "beta"]
    assert "declared: ['alpha', 'n', 'name']" in str(info.value)


def test_notebook_without_parameters_cell_is_an_error(tmp_path):
    nb = write_notebook(tmp_path / "untagged.ipynb", "alpha = 0.5", tagged=False)
    with pytest.raises(ParameterError, match="has no cell tagged 'parameters'"):
        declared_parameters(nb)
    with pytest.raises(ParameterError, match="has no cell tagged 'parameters'"):
        rerun_notebook(nb, {}, out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "untagged.ipynb").exists()


def test_rerun_main_rejects_bad_parameters_before_running(tmp_path, capsys):
    out = tmp_path / "out"
    assert rerun_main([str(TINY), "-p", "n", "2.5", "-p", "gamma", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "n = '2.5': cannot read '2.5' as int" in err and "gamma = '1': unknown parameter" in err
    assert not out.exists()
    assert rerun_main([str(TINY), "--list"]) == 0
    assert json.loads(capsys.readouterr().out)["alpha"] == {"type": "float", "default": 0.5,
                                                             "help": "control strength"}


def test_rerun_executes_with_injected_parameters(tmp_path, capfd):
    # a copy, so the kernel's working directory (the notebook's folder) is a temporary one
    notebook = shutil.copy(TINY, tmp_path / "tiny.ipynb")
    executed = rerun_notebook(notebook, {"alpha": 2, "name": "y"}, out_dir=tmp_path / "out")
    # the kernel (its stderr is this process's) talks over Unix sockets: no plain-TCP warning
    assert "TCP" not in capfd.readouterr().err

    assert executed == tmp_path / "out" / "tiny.ipynb"
    nb = nbformat.read(executed, as_version=4)
    assert nb.metadata["papermill"]["parameters"] == {"alpha": 2, "name": "y"}
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "alpha = 2" in injected[0].source and 'name = "y"' in injected[0].source
    # the notebook's own output: injected values, declared default for n; cwd = the notebook's folder
    expected = {"alpha": 2, "n": 3, "name": "y", "alpha_times_n": 6}
    assert json.loads((tmp_path / "result.json").read_text()) == expected
    assert json.loads(nb.cells[-1].outputs[0]["text"]) == expected
    record = json.loads((tmp_path / "out" / "tiny.params.json").read_text())
    assert record["parameters"] == {"alpha": 2, "name": "y"}
    assert record["defaults"] == {"alpha": 0.5, "n": 3, "name": "x"}
    assert record["status"] == "ok" and record["cwd"] == str(tmp_path)
