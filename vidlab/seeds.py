"""Sub-seeds: every random draw of a generation gets its own seed, derived from (seed, role, index).

`seed + i` makes frame 1 of seed s the same draw as frame 0 of seed s + 1, so videos of
neighbouring seeds share noise and intervals over seeds come out too narrow. A sub-seed is
numpy's `SeedSequence` over (seed, a hash of the role, index): statistically independent
across seeds, roles and indices, and the same on every machine.

>>> sub_seed(42, "frame", 1) == sub_seed(43, "frame", 0)
False
>>> sub_seed(42, "frame", 1) == sub_seed(42, "frame", 1)
True
"""
from __future__ import annotations

import hashlib
import inspect

import numpy as np
import torch

ROLES = ("frame", "segment", "segment_frame", "base", "window", "noise_prior", "scheduler")


def sub_seed(seed: int, role: str, index: int = 0, attempt: int = 0) -> int:
    """A 63-bit seed for draw `index` of `role` in the generation seeded `seed` (try `attempt`)."""
    if role not in ROLES:
        raise ValueError(f"role={role!r} is not one of {list(ROLES)}")
    for name, value in (("seed", seed), ("index", index), ("attempt", attempt)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}={value!r} must be an integer >= 0")
    role_key = int.from_bytes(hashlib.sha256(role.encode()).digest()[:8], "little")
    state = np.random.SeedSequence([int(seed), role_key, int(index), int(attempt)]).generate_state(2, np.uint32)
    return int(state[0]) | (int(state[1]) & 0x7FFFFFFF) << 32


def generator(seed: int, role: str, index: int = 0, attempt: int = 0) -> torch.Generator:
    """A CPU generator seeded with `sub_seed(seed, role, index, attempt)`."""
    return torch.Generator("cpu").manual_seed(sub_seed(seed, role, index, attempt))


def step_kwargs(scheduler, generator_: torch.Generator | None) -> dict:
    """`generator=` for scheduler.step where the scheduler draws noise in its steps (DDIM eta > 0,
    DDPM, ancestral samplers); empty where its step takes no generator (PNDM)."""
    if generator_ is None or "generator" not in inspect.signature(scheduler.step).parameters:
        return {}
    return {"generator": generator_}
