"""Choosing the compute device and a sensible dtype for it."""

from __future__ import annotations

import torch

from .errors import ModelLoadError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then Apple's MPS, then the CPU."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("Device 'cuda' was chosen but no CUDA GPU is available; choose 'auto' or 'cpu'.")
    if requested == "mps" and not _mps_available():
        raise ModelLoadError("Device 'mps' was chosen but Apple's Metal backend is not available; choose 'auto' or 'cpu'.")
    if requested not in ("cpu", "cuda", "mps"):
        raise ModelLoadError(f"Unknown device '{requested}'; choose auto, cpu, cuda or mps.")
    return torch.device(requested)


def pick_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """``auto``: bfloat16 on GPUs that support it, else float16 on GPUs; float32 on the CPU.

    Half precision on the CPU is slow on most processors and numerically touchy,
    so the CPU gets float32 unless the user asks otherwise.
    """
    if requested != "auto":
        try:
            return _DTYPES[requested]
        except KeyError:
            raise ModelLoadError(f"Unknown dtype '{requested}'; choose auto, float32, bfloat16 or float16.") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type
