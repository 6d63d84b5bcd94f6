"""One denoising step (ControlNet residuals, then the UNet) recorded once as a TorchScript graph.

On this CPU a zoo-sized step spends about a quarter of its time in Python: diffusers' module
calls and the exact-savings wrappers of `sd_loop` (measured: 40.9 ms eager against 29.3 ms for
the same step replayed from a graph, bit-identical output). `torch.jit.trace` records the aten
ops one eager step runs; replaying them gives the same bits, because they are the same kernels
on the same shapes, with the graph executor's optimizations (and with them its fusers) off.

What a trace cannot see is Python's control flow, so a graph is only used where that flow is
fixed by what the key holds:
- the key: the models, the storage of every weight, input shapes and dtypes, the ControlNet
  scale, the CFG chunk, and whether each input's two batch halves are equal (latents, text,
  control: that decides which attention layers compute one CFG half for both);
- a graph is traced on a step's inputs, then checked against eager on the next step's (other
  latents, other timestep): bit-equal or it is dropped, with a warning, and that key runs eager;
- models with hooks, in training mode, with weights that require grad, or with any attention
  processor other than the plain one (an attention capture, say) are never traced: they run
  eager as before.

`torch.jit.trace` is deprecated in torch 2.13 (it still works). Where it fails or is gone, the
loop runs eager, with the same frames, slower. VIDLAB_STEP_GRAPHS=0 turns graphs off.
"""
from __future__ import annotations

import os
import warnings
import weakref
from collections import OrderedDict
from contextlib import ExitStack

import torch
from diffusers.models.attention_processor import Attention

MAX_GRAPHS_PER_MODEL = 8
_GRAPHS: weakref.WeakKeyDictionary[torch.nn.Module, OrderedDict] = weakref.WeakKeyDictionary()
_UNUSABLE = "unusable"  # a key whose trace did not replay eager's bits


def enabled() -> bool:
    return os.environ.get("VIDLAB_STEP_GRAPHS", "1") != "0"


def clear() -> None:
    """Drop every recorded graph (they hold references to the weights they were traced on)."""
    _GRAPHS.clear()


def graph_stats() -> dict:
    """{'graphs': recorded graphs, 'verified': those whose first replay matched eager,
    'unusable': keys that run eager, 'replays': steps answered from a graph}."""
    entries = [g for graphs in _GRAPHS.values() for g in graphs.values()]
    graphs = [g for g in entries if g is not _UNUSABLE]
    return {"graphs": len(graphs), "verified": sum(g.verified for g in graphs),
            "unusable": len(entries) - len(graphs), "replays": sum(g.replays for g in graphs)}


def traceable(models, is_plain) -> bool:
    """True when one eager step is all a graph needs to record: eval mode, no hooks anywhere,
    and only plain attention (`is_plain`) in every Attention layer."""
    module_hooks = torch.nn.modules.module
    if any(getattr(module_hooks, name, None) for name in
           ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_forward_hooks_with_kwargs")):
        return False
    for model in models:
        if any(p.requires_grad for p in model.parameters()):
            return False  # a trace cannot hold a weight that requires grad (training runs eager)
        for m in model.modules():
            if m.training or m._forward_hooks or m._forward_pre_hooks:
                return False
            if isinstance(m, Attention) and not is_plain(m):
                return False
    return True


def equal_halves(x: torch.Tensor) -> bool:
    """Whether the batch's two halves are equal: what decides, layer by layer, where `sd_loop`
    computes one half for both (under CFG the halves are a sample's uncond and cond twins)."""
    half = x.shape[0] // 2
    return x.shape[0] % 2 == 0 and torch.equal(x[:half], x[half:])


def _weights_signature(models) -> tuple:
    return tuple(t.data_ptr() for model in models for t in (*model.parameters(), *model.buffers()))


class _Graph:
    """A recorded step and whether its first replay matched eager bit for bit."""

    def __init__(self, function):
        self.function, self.verified, self.replays = function, False, 0

    def __call__(self, *inputs):
        with torch.jit.optimized_execution(False):  # as recorded: no profiling, no fuser, nothing re-rounds
            return self.function(*inputs)


class StepRunner:
    """eps = runner(model_in, t): replayed from a verified graph where there is one, eager otherwise.

    step(model_in, t, *tensors) -> eps: one step, to run inside `contexts(*tensors)` (the loop's
    exact-savings contexts). Eager steps share one long-lived `contexts` (the text K/V cached across
    steps); a trace records a step inside contexts of its own. `tensors`: the step's other inputs
    (text states, the ControlNet's conditioning embedding). `key`: what else the step depends on
    (its scalars). Every eps returned is eager's, or a graph's whose first replay was bit-equal to
    eager's.
    """

    def __init__(self, step, contexts, models, key: tuple, tensors: tuple, is_plain):
        self.step, self.contexts, self.tensors = step, contexts, tensors
        self.models, self.stack, self.graphs, self.key = [m for m in models if m is not None], None, None, None
        if enabled() and traceable(self.models, is_plain):
            self.graphs = _GRAPHS.setdefault(self.models[0], OrderedDict())
            self.key = (tuple(id(m) for m in self.models), _weights_signature(self.models), *key,
                        tuple((x.shape, x.dtype, x.device, equal_halves(x)) for x in tensors))

    def _eager(self, model_in, t):
        if self.stack is None:
            self.stack = ExitStack()
            self.stack.enter_context(self.contexts(*self.tensors))
        return self.step(model_in, t, *self.tensors)

    def _fresh_step(self, model_in, t, *tensors):
        """One step inside contexts of its own: what a trace records (no cache from another step)."""
        with self.contexts(*tensors):
            return self.step(model_in, t, *tensors)

    def __call__(self, model_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.key is None:
            return self._eager(model_in, t)
        key = (*self.key, model_in.shape, model_in.dtype, model_in.device, t.dtype, equal_halves(model_in))
        graph = self.graphs.get(key)
        if graph is None and self.stack is None:  # first sight of this key: record it, answer eager
            graph = self.graphs[key] = self._record(model_in, t)
            while len(self.graphs) > MAX_GRAPHS_PER_MODEL:
                self.graphs.popitem(last=False)
            return self._eager(model_in, t)
        if graph is None or graph is _UNUSABLE:
            return self._eager(model_in, t)
        self.graphs.move_to_end(key)
        if graph.verified:
            graph.replays += 1
            return graph(model_in, t, *self.tensors)
        eager = self._eager(model_in, t)  # the first replay, on inputs the trace never saw
        graph.verified = torch.equal(graph(model_in, t, *self.tensors), eager)
        if not graph.verified:
            self.graphs[key] = _UNUSABLE
            warnings.warn("a traced denoising step did not replay eager's bits; this model and shape run eager "
                          "from now on (same frames, slower)", RuntimeWarning, stacklevel=2)
        return eager

    def _record(self, model_in, t):
        if any("forward" in vars(m) for model in self.models for m in model.modules()):
            return _UNUSABLE  # someone else's wrappers (and their caches) would go into the graph
        runner = weakref.ref(self)  # torch keeps the traced Python function: it must not hold the models
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the deprecation notice and the tracer's bool warnings
                function = torch.jit.trace(lambda x, s, *tensors: runner()._fresh_step(x, s, *tensors),
                                           (model_in, t, *self.tensors), check_trace=False)
        except Exception as error:  # noqa: BLE001 - whatever stops a trace, the step runs eager
            warnings.warn(f"the denoising step could not be traced ({type(error).__name__}: {error}); it runs "
                          "eager (same frames, slower)", RuntimeWarning, stacklevel=3)
            return _UNUSABLE
        return _Graph(function)

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = None
