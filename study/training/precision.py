"""The arithmetic a trial trains in: `train.precision` (auto | fp32 | bf16), resolved per device.

`auto` is bf16 autocast where the hardware runs bf16 natively: every CUDA GPU this project
targets, and a CPU with AVX-512 BF16 or AMX instructions, where oneDNN's bf16 kernels run about
twice as fast as fp32 (the benchmark shows it); elsewhere fp32. The resolved value is part of a
study's identity (study.design.spec): a study never mixes precisions.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX) that oneDNN uses. PyTorch
    has no public query: these private ones exist from torch 2.2 on, and a test checks them
    against the CPU's flags, so that a torch without them fails that test instead of silently
    training in fp32."""
    cpu = torch.cpu
    native = (getattr(cpu, "_is_avx512_bf16_supported", None),
              getattr(cpu, "_is_amx_tile_supported", None))
    return any(query is not None and query() for query in native)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` as fp32 or bf16 for this device; fp32 and bf16 as given."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32"


def input_dtype(precision: str) -> torch.dtype:
    """How the images are stored for a resolved precision: the model reads bf16 under bf16
    autocast anyway, so storing it loses nothing and halves the bytes augmentation moves."""
    return torch.bfloat16 if precision == "bf16" else torch.float32
