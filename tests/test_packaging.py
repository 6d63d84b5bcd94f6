"""The package's own files: dependency lists agree, the zoo ships as package data, CI calls the README's command."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_side = {r for r in pip if not r.startswith("-e")}
    assert {_name(r): r for r in conda_side} == {_name(r): r for r in pyproject}


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make quickstart" in readme
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_makefile_installs_cpu_torch_before_the_package():
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.index("torch==2.13.0") < makefile.index('pip install -q -e ".[dev]"')


def test_zoo_weights_are_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vidlab"]
    assert "zoo/**/*.safetensors" in data and "zoo/**/*.json" in data


def test_notebooks_are_committed_without_outputs():
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert '"output_type"' not in nb.read_text(), nb


def test_one_version_in_pyproject_and_the_package():
    from vidlab._version import __version__
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__
