"""The package's layout says what each part is: imports go one way, no private reach-ins, small modules."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vidlab"
# the package's layers, lowest first: a module imports its own layer and those below, never one above,
# not even inside a function (a lazy import still runs back up). '' is the package face.
LAYERS = (
    ("_version", "_quiet", "errors", "seeds", "io", "world"),  # foundations: no model, no request
    ("config",),                                              # typed requests
    ("backends",),                                            # loading models
    ("metrics", "strategies"),                                # measuring frames; making them
    ("attention", "video", "generate"),                       # what one generation is
    ("sweeps",),                                              # grids of generations, their tables and plots
    ("viz", "quickstart"),                                    # notebook widgets over sweeps
    ("training",),                                            # making the zoo
    ("cli", ""),                                              # the command line and the package face
)
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every vidlab import in the file, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("vidlab"):
                out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("vidlab")]
    return out


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


FILES = sorted(PACKAGE.rglob("*.py"))


def rank(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if layer(module) in names)


def test_every_layer_of_the_package_is_listed():
    listed = {name for names in LAYERS for name in names}
    assert {layer(module_name(p)) for p in FILES} == listed


def test_no_import_runs_back_up_a_layer():
    bad = []
    for path in FILES:
        me = module_name(path)
        for target, names in imports_of(path):
            for t in [target] + [f"{target}.{n}" for n in names if f"{target}.{n}".count(".") == 1]:
                if t != "vidlab" and rank(t) > rank(me):
                    bad.append(f"{me} imports {t}")
    assert bad == []


def test_the_shapes_world_imports_only_itself_and_io():
    bad = [f"{module_name(p)} imports {t}" for p in FILES if layer(module_name(p)) == "world"
           for t, _ in imports_of(p) if layer(t) not in ("world", "io", "")]
    assert bad == []


def test_no_private_name_is_imported_from_another_module():
    bad = [f"{module_name(p)} imports {t}.{n}" for p in FILES for t, names in imports_of(p) for n in names
           if n.startswith("_") and not n.startswith("__") and t != module_name(p)]
    assert bad == []


def test_no_module_is_longer_than_400_lines():
    long = {module_name(p): n for p in FILES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checker_sees_a_violation():
    """The checker itself: a relative import two levels up is resolved to the layer it names, which ranks
    above the module's own."""
    tmp = PACKAGE / "world" / "_layout_probe.py"
    tmp.write_text("from ..training import common\nfrom ..strategies.sd_loop import _private\n")
    try:
        found = imports_of(tmp)
    finally:
        tmp.unlink()
    assert found == [("vidlab.training", ["common"]), ("vidlab.strategies.sd_loop", ["_private"])]
    assert rank("vidlab.training.common") > rank("vidlab.world._layout_probe")


def test_no_import_circles_between_modules_of_a_layer():
    """Module A imports B (at the top or inside a function) and B imports A: a circle, in no layer."""
    modules = {module_name(p): p for p in FILES}
    edges = {}
    for me, path in modules.items():
        targets = set()
        for target, names in imports_of(path):
            targets |= {t for t in [target] + [f"{target}.{n}" for n in names] if t in modules and t != me}
        edges[me] = targets
    circles = sorted(f"{a} <-> {b}" for a, ts in edges.items() for b in ts
                     if a in edges.get(b, ()) and a < b and "__init__" not in str(modules[a]) + str(modules[b]))
    assert circles == []


def test_no_module_imports_the_package_face():
    """`vidlab/__init__.py` imports the layers; a module that imports it back (`import vidlab`, `from .. import
    x`) runs back up every layer. What any layer needs from the top lives in a module that imports nothing
    (`vidlab._version`)."""
    bad = [f"{module_name(p)} imports {t} {names}" for p in FILES if p != PACKAGE / "__init__.py"
           for t, names in imports_of(p) if t == "vidlab" and not all((PACKAGE / n).is_dir() for n in names)]
    assert bad == []  # (a subpackage by name, `from .. import io`, is not the face)
