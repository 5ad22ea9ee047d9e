"""Choosing the compute device and a sensible dtype for it."""

from __future__ import annotations

import torch

from assistant.errors import ModelLoadError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then Apple's MPS, then the CPU."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("Device 'cuda' was chosen but no CUDA GPU is available; choose 'auto' or 'cpu'.")
    if requested == "mps" and not mps_available():
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


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or MPS) out-of-memory error, whichever way torch raised it."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and (
        "cuda" in str(exc).lower() or "mps" in str(exc).lower()
    )


def out_of_memory_message(model: str, while_doing: str) -> str:
    """One clear sentence that offers the ways out: the CPU, or a smaller model."""
    free = ""
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            available, _total = torch.cuda.mem_get_info()
            free = f" ({available / 1e9:.1f} GB free)"
    except Exception:  # noqa: BLE001, S110 - only a detail of the message
        free = ""
    return (
        f"The GPU ran out of memory{free} while {while_doing} '{model}': choose device 'cpu' "
        "(slower, uses the computer's RAM), 8-bit or 4-bit loading, or a smaller model on the Models page."
    )


def free_accelerator_memory() -> None:
    """Give cached GPU memory back to the driver (after a model is dropped)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps_available() and mps is not None and hasattr(mps, "empty_cache"):
        mps.empty_cache()


def quantization_support(device: torch.device) -> str | None:
    """Why 8-/4-bit loading cannot be used on ``device``, or None when it can."""
    import importlib.util

    if device.type != "cuda":
        where = "no CUDA GPU is available" if not torch.cuda.is_available() else f"the device is set to '{device.type}'"
        return (
            f"8-bit and 4-bit loading need a CUDA GPU (they use bitsandbytes), but {where}; "
            "choose quantization 'none'" + ("" if not torch.cuda.is_available() else " or device 'cuda'") + "."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        return (
            "8-bit and 4-bit loading need the bitsandbytes package, which is not installed "
            "(pip install bitsandbytes); install it or choose quantization 'none'."
        )
    return None
