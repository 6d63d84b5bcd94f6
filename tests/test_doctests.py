"""Every runnable example in vidlab's docstrings gives what it shows (examples that need a model
download, a GPU or a folder of frames carry `# doctest: +SKIP`)."""
import doctest
import importlib
import pkgutil

import vidlab


def test_every_docstring_example_gives_what_it_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files (clip.mp4, frames/) write them here
    names = sorted(m.name for m in pkgutil.walk_packages(vidlab.__path__, "vidlab.")
                   if not m.name.endswith("__main__"))
    failed, attempted = {}, 0
    for name in names:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, report=False,
                                 verbose=False)
        attempted += result.attempted
        if result.failed:
            failed[name] = result.failed
    assert not failed, f"docstring examples that fail (module: count): {failed}; run python -m doctest -v on them"
    assert attempted >= 40, f"only {attempted} examples ran: the walk missed modules"
