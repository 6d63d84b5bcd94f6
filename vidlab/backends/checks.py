"""Checks of what a user points a backend at, before and while it loads: the device exists on this
machine, and a model folder's files can be read (the broken one is named)."""
from __future__ import annotations

from pathlib import Path

import torch


def check_device(device: str | torch.device | None) -> torch.device | None:
    """The device, or UserInputError when it is not a device name or this machine does not have it."""
    from ..errors import UserInputError
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserInputError("device", device, "is not a torch device: 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    here = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (["mps"] if torch.backends.mps.is_available()
                                                                       else [])
    if device.type not in here:
        raise UserInputError("device", str(device), f"is not on this machine (torch {torch.__version__} sees no "
                                                    f"{device.type.upper()}); allowed here: {here}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserInputError("device", str(device), f"is past this machine's {torch.cuda.device_count()} CUDA "
                                                    f"device(s)")
    return device


def find_broken_file(folder: Path):
    """The first JSON config or safetensors file under a model folder that cannot be read, as a
    CorruptFileError naming it and what is wrong; None when every one reads."""
    from safetensors import safe_open

    from ..errors import CorruptFileError, read_json_config
    if not folder.is_dir():
        return None
    for path in sorted(folder.rglob("*.json")):
        try:
            read_json_config(path)
        except CorruptFileError as err:
            return err
    for path in sorted(folder.rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as fh:
                for name in fh.keys():
                    fh.get_slice(name)
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            return CorruptFileError(f"{path}: not a readable safetensors file ({type(err).__name__}: "
                                    f"{' '.join(str(err).split())[:160]}); a truncated copy? copy it again")
    return None
