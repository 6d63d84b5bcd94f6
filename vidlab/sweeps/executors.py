"""Executors: where the points of a sweep run. In this process, in a pool of local processes, or on Ray.

An executor has one method, `map(fn, items)`, yielding `(item, outcome)` as each item
finishes (any order), where `outcome` is `fn(item)`'s return value, or the exception the
executor itself hit (a worker that died). `fn` handles its own point's errors, so an
exception here means the machinery failed, not the point; the sweep records it as a failed
attempt and tries the point again. Executors with worker processes keep each worker alive for
the whole sweep, so a worker loads a model once (the backend cache lives in the process), not
once a point; `close()` ends them.

>>> list(LocalExecutor().map(lambda x: x * x, [1, 2, 3]))
[(1, 1), (2, 4), (3, 9)]
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

RAY_HINT = "pip install 'vidlab[ray]'"


class LocalExecutor:
    """Runs items one after another in this process, in order."""

    name = "local"

    def map(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Any]]:
        for item in items:
            yield item, fn(item)

    def close(self) -> None:
        pass


def _worker_setup(threads: int | None) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


class ProcessExecutor:
    """Runs items in `workers` local processes (spawned; each keeps its models loaded between items).

    `fn` and the items must pickle. threads: torch threads in each worker (None: torch's default).
    A worker killed mid-item breaks the pool: the items in flight come back as that error, and
    the next `map` starts a fresh pool.
    """

    name = "process"

    def __init__(self, workers: int = 2, threads: int | None = 1):
        if workers < 1:
            raise ValueError(f"workers={workers} must be >= 1")
        self.workers, self.threads, self._pool = workers, threads, None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_setup, initargs=(self.threads,))
        return self._pool

    def map(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Any]]:
        pool = self._get_pool()
        pending = {pool.submit(fn, item): item for item in items}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as err:  # noqa: BLE001 - a dead worker is the point's failed attempt
                    outcome = err
                    if isinstance(err, BrokenProcessPool):
                        self.close()
                yield item, outcome

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class _RayWorker:
    """One long-lived Ray actor: runs items one at a time; its process keeps the models it loaded."""

    def __init__(self, threads: int | None):
        _worker_setup(threads)

    def run(self, fn: Callable, item):
        return fn(item)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    """Runs items on Ray, on `num_workers` actors (default: as many as the cluster's CPUs / num_cpus).

    address: an existing cluster ("ray://host:10001", "auto") or None for a local one, used when
    Ray is not initialized yet (`init_kwargs` go to `ray.init`). Each actor asks for num_cpus /
    num_gpus (num_gpus=1: one GPU a worker) and runs with `threads` torch threads.
    `fn` and the items must pickle (a point function defined at module level, not a lambda),
    and every worker must see the store's folder (a shared filesystem on a cluster): workers
    write their points' files themselves. An actor that dies (a killed worker, a lost node) is
    replaced; its item comes back as the error, for the sweep to retry.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_workers: int | None = None, num_cpus: float = 1,
                 num_gpus: float = 0, threads: int | None = 1, init_kwargs: dict | None = None):
        try:
            import ray
        except ImportError as err:
            raise ImportError(f"RayExecutor needs the `ray` package, which is not installed ({RAY_HINT}); "
                              f"or use executor='local' or 'process'") from err
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers={num_workers} must be >= 1")
        self._ray = ray
        self.address, self.num_workers, self.num_cpus, self.num_gpus = address, num_workers, num_cpus, num_gpus
        self.threads, self.init_kwargs = threads, dict(init_kwargs or {})
        self._actors: list = []

    def _new_actor(self):
        worker = self._ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=0)(_RayWorker)
        return worker.remote(self.threads)

    def _ensure_actors(self) -> list:
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        if not self._actors:
            n = self.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.num_cpus, 1e-9)))
            self._actors = [self._new_actor() for _ in range(n)]
        return self._actors

    def worker_pids(self) -> list[int]:
        """The process id of each actor (starting them if needed)."""
        return self._ray.get([a.pid.remote() for a in self._ensure_actors()])

    def map(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Any]]:
        ray = self._ray
        idle = list(self._ensure_actors())
        queue, pending = list(items), {}
        fn_ref = ray.put(fn)
        while queue or pending:
            while idle and queue:
                actor, item = idle.pop(), queue.pop(0)
                pending[actor.run.remote(fn_ref, item)] = (actor, item)
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            actor, item = pending.pop(ready)
            try:
                outcome = ray.get(ready)
                idle.append(actor)
            except Exception as err:  # noqa: BLE001 - a dead actor: the item failed, a new actor takes its place
                outcome = err
                if isinstance(err, ray.exceptions.RayActorError):
                    replacement = self._new_actor()
                    self._actors[self._actors.index(actor)] = replacement
                    idle.append(replacement)
                else:
                    idle.append(actor)
            yield item, outcome

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []


EXECUTORS = {"local": LocalExecutor, "process": ProcessExecutor, "ray": RayExecutor}


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
