"""Executors: where the points of a sweep run. A plain local loop, or Ray when it is installed.

An executor has one method, `map(fn, items)`, yielding `(item, outcome)` as each item
finishes (any order), where `outcome` is `fn(item)`'s return value, or the exception the
executor itself hit (a Ray worker that died). `fn` handles its own point's errors, so an
exception here means the machinery failed, not the point.

>>> list(LocalExecutor().map(lambda x: x * x, [1, 2, 3]))
[(1, 1), (2, 4), (3, 9)]
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

RAY_HINT = "pip install 'ray[default]'"


class LocalExecutor:
    """Runs items one after another in this process, in order."""

    name = "local"

    def map(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Any]]:
        for item in items:
            yield item, fn(item)


class RayExecutor:
    """Runs items as Ray tasks (`ray.init(address)` when Ray is not initialized yet).

    `fn` and the items must pickle (a point function defined at module level, not a lambda),
    and every worker must see the store's folder (a shared filesystem on a cluster): workers
    write their points' files themselves.
    num_cpus / num_gpus: resources each task asks for (num_gpus=1 gives each point a GPU).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0):
        try:
            import ray
        except ImportError as err:
            raise ImportError(f"RayExecutor needs the `ray` package, which is not installed ({RAY_HINT}); "
                              f"or use the local executor: executor='local'") from err
        self._ray = ray
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus

    def map(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Any]]:
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address)
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(fn)
        pending = {task.remote(item): item for item in items}
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            item = pending.pop(ready)
            try:
                outcome = ray.get(ready)
            except Exception as err:  # noqa: BLE001 - a worker crash is recorded as the point's failure
                outcome = err
            yield item, outcome


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor}


def get_executor(executor: str | object | None) -> object:
    """An executor from a name in EXECUTORS (or an object with `.map`, returned as is; None -> local)."""
    if executor is None:
        return LocalExecutor()
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ValueError(f"executor={executor!r} is not one of {sorted(EXECUTORS)}")
        return EXECUTORS[executor]()
    if not callable(getattr(executor, "map", None)):
        raise TypeError(f"executor {executor!r} has no map(fn, items) method")
    return executor
