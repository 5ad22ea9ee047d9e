"""A short list of models worth trying, and whether each fits this computer.

Plain Python (no Qt, no torch at import): the Models page shows the list, the
models thread measures the computer (``machine_memory``), and ``fit`` compares.

Sizes are approximate: ``download_bytes`` is the size of the repository's
safetensors weights (what the app downloads, give or take a few MB of config
and tokenizer files), ``parameters`` the model's parameter count.  Memory is
estimated from the parameters at the precision the app would load them in
(``pick_dtype``'s rule: float32 on the CPU, bfloat16/float16 on a GPU, or the
precision and quantization the settings name), plus working memory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from enum import Enum

GB = 1_000_000_000


@dataclass(frozen=True)
class Recommended:
    repo_id: str
    title: str  # a short name for people
    note: str  # what it is good for, one line
    parameters: int
    download_bytes: int  # approximate: the safetensors weights on the hub
    gpu_advised: bool = False  # runs on a CPU only painfully slowly


# Real hub ids.  Download sizes are the repositories' weights in bfloat16, approximate.
RECOMMENDED: tuple[Recommended, ...] = (
    Recommended("HuggingFaceTB/SmolVLM-256M-Instruct", "SmolVLM 256M",
                "The default: small and quick, even on a CPU; short answers about images.",
                parameters=256_000_000, download_bytes=513_000_000),
    Recommended("HuggingFaceTB/SmolVLM-500M-Instruct", "SmolVLM 500M",
                "Twice the size: better at reading text in images; still fine on a CPU.",
                parameters=507_000_000, download_bytes=1_020_000_000),
    Recommended("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "SmolVLM2 2.2B",
                "Clearly better answers and video frames; slow on a CPU, comfortable on a GPU.",
                parameters=2_250_000_000, download_bytes=4_490_000_000),
    Recommended("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen2.5-VL 3B",
                "Strong at documents, charts and reading; wants a GPU.",
                parameters=3_750_000_000, download_bytes=7_510_000_000, gpu_advised=True),
    Recommended("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL 7B",
                "The most capable here; needs a GPU with about 20 GB (or 8-/4-bit loading).",
                parameters=8_290_000_000, download_bytes=16_580_000_000, gpu_advised=True),
)

# Speech models (Whisper) the app picks by default (``assistant/encoders/asr.py``): approximate downloads.
SPEECH_DOWNLOAD_BYTES = {
    "Systran/faster-whisper-base.en": 145_000_000,  # CTranslate2 model.bin (float16)
    "Systran/faster-whisper-tiny.en": 75_000_000,
    "Systran/faster-whisper-small.en": 484_000_000,
    "openai/whisper-base.en": 290_000_000,  # model.safetensors (float32)
    "openai/whisper-tiny.en": 151_000_000,
    "openai/whisper-small.en": 967_000_000,
}


def speech_download_bytes(model: str) -> int | None:
    """About how much a speech model's download is (None: not one this app knows)."""
    return SPEECH_DOWNLOAD_BYTES.get(model.strip())


WORKING_FACTOR = 1.2  # activations, the vision tower's features, the KV cache of a conversation
WORKING_BYTES = 300_000_000  # the runtime itself (allocator, kernels), roughly
RAM_SHARE = 0.7  # the share of RAM a model may take and leave the computer usable
RAM_TIGHT_SHARE = 0.9  # above RAM_SHARE and up to this: it loads, but the computer will struggle
GPU_SHARE = 0.9  # the share of GPU memory a model may take (the driver and display keep some)

_BYTES_PER_PARAMETER = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
_QUANTIZED = {"8bit": 1.0, "4bit": 0.55}  # NF4 keeps some layers (norms, embeddings) in 16 bits


@dataclass(frozen=True)
class Machine:
    """What this computer offers a model (measured by ``machine_memory`` off the GUI thread)."""

    ram_bytes: int | None  # total RAM; None when it could not be measured
    gpu_bytes: int | None = None  # total memory of the CUDA GPU; None without one
    gpu_name: str = ""
    mps: bool = False  # Apple's Metal: the GPU shares the RAM

    @classmethod
    def from_capabilities(cls, caps: dict) -> Machine:
        return cls(caps.get("ram_bytes"), caps.get("gpu_bytes") if caps.get("cuda") else None,
                   caps.get("cuda_name", ""), bool(caps.get("mps")))


class Verdict(Enum):
    FITS = "fits"
    TIGHT = "tight"  # loads, but leaves little room (or is very slow)
    TOO_BIG = "too big"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Fit:
    verdict: Verdict
    where: str  # "gpu", "cpu" or "mps": where the settings would run it
    precision: str  # float32, bfloat16, float16, 8bit, 4bit
    needed_bytes: int
    available_bytes: int | None
    text: str  # one line for people


def placement(machine: Machine, device: str = "auto", dtype: str = "auto", quantization: str = "none") -> tuple[str, str]:
    """Where the settings would run a model on ``machine`` and in which precision (pick_device/pick_dtype's rules)."""
    if device == "auto":
        where = "gpu" if machine.gpu_bytes else "mps" if machine.mps else "cpu"
    else:
        where = {"cuda": "gpu"}.get(device, device)
    if where == "gpu" and quantization in _QUANTIZED:
        return where, quantization
    if dtype != "auto":
        return where, dtype
    return where, {"gpu": "bfloat16", "mps": "float16"}.get(where, "float32")


def memory_needed(model: Recommended, precision: str) -> int:
    """Bytes a loaded model takes in ``precision``, with room to answer (approximate)."""
    per = _QUANTIZED.get(precision) or _BYTES_PER_PARAMETER.get(precision, 4.0)
    return int(model.parameters * per * WORKING_FACTOR + WORKING_BYTES)


def fit(model: Recommended, machine: Machine, device: str = "auto", dtype: str = "auto",
        quantization: str = "none") -> Fit:
    """Whether ``model`` fits ``machine`` as the settings would run it."""
    where, precision = placement(machine, device, dtype, quantization)
    needed = memory_needed(model, precision)
    if where == "gpu":
        available, share, tight, kind = machine.gpu_bytes, GPU_SHARE, GPU_SHARE, "GPU memory"
    else:
        available, share, tight, kind = machine.ram_bytes, RAM_SHARE, RAM_TIGHT_SHARE, "RAM"
    figures = f"needs about {gb(needed)} of {gb(available)} {kind}" if available else f"needs about {gb(needed)}"
    if not available:
        return Fit(Verdict.UNKNOWN, where, precision, needed, available,
                   f"Unknown: {figures}; this computer's memory could not be measured.")
    if needed > available * tight:
        return Fit(Verdict.TOO_BIG, where, precision, needed, available, f"Too big: {figures}.")
    if needed > available * share:
        return Fit(Verdict.TIGHT, where, precision, needed, available,
                   f"Tight: {figures}; other programs will have little room.")
    if model.gpu_advised and where == "cpu":
        return Fit(Verdict.TIGHT, where, precision, needed, available,
                   f"Fits, but very slow without a GPU: {figures}.")
    return Fit(Verdict.FITS, where, precision, needed, available, f"Fits: {figures}.")


def gb(n: int | None) -> str:
    if not n:
        return "? GB"
    return f"{n / GB:.1f} GB" if n < 10 * GB else f"{n / GB:.0f} GB"


def find(repo_id: str) -> Recommended | None:
    return next((m for m in RECOMMENDED if m.repo_id == repo_id), None)


def total_ram() -> int | None:
    """Total physical memory in bytes (None when the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    if sys.platform == "win32":
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                        ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                        ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                        ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

        status = _Status()
        status.dwLength = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.ullTotalPhys)
    return None


def machine_memory() -> dict:
    """RAM and CUDA GPU memory, for ``Machine.from_capabilities`` (imports torch: never on the GUI thread)."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = int(torch.cuda.get_device_properties(0).total_memory)
    return {"ram_bytes": total_ram(), "gpu_bytes": gpu}
