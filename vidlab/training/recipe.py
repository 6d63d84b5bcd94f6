"""Recipes as data: how each shipped part of the zoo was trained, one JSON file a part in `recipes/`.

A recipe lists the commands that made its part, in order, with the values that shipped (what a
module's defaults say does not matter: the recipe spells every value out), what it ships, which
recipe's export it starts from, and what about the run the commands cannot say (a run stopped
early, a pool drawn with another seed). `--run-dir` is the recipe's own; `{zoo}` is the packaged zoo.

    python -m vidlab.training.recipe list
    python -m vidlab.training.recipe show joint-clips-placed       # the commands, as shell lines
    python -m vidlab.training.recipe run joint-clips-placed --run-dir checkpoints/placed
    python -m vidlab.training.recipe run image --smoke --run-dir /tmp/r --zoo /tmp/zoo   # one step each

`--smoke` runs every command for one step (a stage's n-th command in the recipe: n steps, so a
resumed stage takes one more), with the command's small data sizes, and exports into `--zoo`, which
must then be given: a smoke run never writes into the packaged zoo.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shlex
from pathlib import Path

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
ZOO = "{zoo}"


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    about: str
    ships: tuple[str, ...]
    builds_on: str | None
    commands: tuple[dict, ...]  # {"run": [module, *args], "smoke": [extra args for a one-step run]}


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def load_recipe(name: str) -> Recipe:
    """The recipe `name` (a file `recipes/<name>.json`); ValueError naming the known ones otherwise."""
    path = RECIPE_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"recipe={name!r} is not one of {recipe_names()}")
    data = json.loads(path.read_text())
    return Recipe(name, data["about"], tuple(data["ships"]), data["builds_on"], tuple(data["commands"]))


def command_args(recipe: Recipe, run_dir: str, zoo: str, smoke: bool = False) -> list[tuple[str, list[str]]]:
    """(module, argv) of each command, `--run-dir` and `{zoo}` filled in; with `smoke`, one step more
    than the same stage's previous command and the command's smoke arguments appended."""
    out, seen = [], {}
    for command in recipe.commands:
        module, *args = command["run"]
        args = [zoo if a == ZOO else a for a in args]
        if smoke:
            key = (module, args[0])
            seen[key] = seen.get(key, 0) + 1
            if "--steps" in args:
                args[args.index("--steps") + 1] = str(seen[key])
            args += command.get("smoke", [])
        out.append((module, args + ["--run-dir", run_dir]))
    return out


def shell_lines(recipe: Recipe, run_dir: str = "checkpoints/<recipe>", zoo: str = "vidlab/zoo/shapes-tiny") -> list[str]:
    """The recipe's commands as a person types them."""
    run_dir = run_dir.replace("<recipe>", recipe.name)
    return [f"python -m {module} {shlex.join(args)}" for module, args in command_args(recipe, run_dir, zoo)]


def run_recipe(name: str, run_dir: str, zoo: str | None = None, smoke: bool = False) -> None:
    """Run every command of recipe `name` in this process (each module's `main(argv)`)."""
    if smoke and zoo is None:
        raise ValueError("a smoke run exports into --zoo, which must be given (never the packaged zoo)")
    from ..backends.presets import ZOO_PATH
    for module, args in command_args(load_recipe(name), run_dir, zoo or str(ZOO_PATH), smoke):
        print(f"$ python -m {module} {shlex.join(args)}", flush=True)
        importlib.import_module(module).main(args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="The zoo's training recipes, one a shipped part (see module doc).")
    parser.add_argument("command", choices=["list", "show", "run"])
    parser.add_argument("name", nargs="?", help="show / run: the recipe")
    parser.add_argument("--run-dir", default=None, help="run: where checkpoints go (default checkpoints/<name>)")
    parser.add_argument("--zoo", default=None, help="run: the zoo exports go into (default: the packaged zoo)")
    parser.add_argument("--smoke", action="store_true", help="run: every command for one step, small data")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in recipe_names():
            recipe = load_recipe(name)
            print(f"{name:20s} ships {', '.join(recipe.ships)}; from {recipe.builds_on or 'nothing'}")
        return
    if args.name is None:
        parser.error(f"{args.command} needs a recipe name: one of {recipe_names()}")
    if args.command == "show":
        recipe = load_recipe(args.name)
        print(f"# {recipe.about}")
        print("\n".join(shell_lines(recipe)))
        return
    run_recipe(args.name, args.run_dir or f"checkpoints/{args.name}", args.zoo, args.smoke)


if __name__ == "__main__":
    main()
