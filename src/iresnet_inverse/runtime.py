"""Where computations run: device choice, float32 precision, determinism, threads, seeds."""

import os

import torch

from iresnet_inverse.errors import ConfigError

# cuBLAS is reproducible only with a fixed workspace (read when cuBLAS starts; CUDA docs).
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU. Asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a device (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device: {name} requested but no CUDA device is available")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device: {name} requested but there are {count} CUDA devices")
    elif device.type != "cpu":
        raise ConfigError(f"device: {name!r} is not supported (cpu, cuda, cuda:N or auto)")
    return device


def setup(name: str = "auto", deterministic: bool = False) -> torch.device:
    """The device of a job (``resolve_device``), with float32 meaning float32 on it: TF32
    off for convolutions and matmuls (on Ampere and later cuDNN uses TF32 by default, whose
    rounding leaves the solvers a residual floor above their 1e-5 tolerance). With
    ``deterministic``, deterministic algorithms only (an op without one raises) and cuBLAS's
    fixed workspace. Every job calls it before its first CUDA work; on the CPU it changes
    no result."""
    device = resolve_device(name)
    # The per-backend settings (torch >= 2.9); mixing them with the legacy ``allow_tf32``
    # flags is an error in torch.
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cudnn.rnn.fp32_precision = "ieee"
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.benchmark = False
    # Only when it changes the setting: the call imports torch._inductor, about 2 s per job.
    if deterministic != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(deterministic)
    return device


def set_threads(threads: int) -> None:
    """Use exactly the threads Snakemake gave the job."""
    torch.set_num_threads(max(1, int(threads)))


def generator(seed: int) -> torch.Generator:
    """A CPU generator for noise, shuffling and probes (its state goes into checkpoints)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))
