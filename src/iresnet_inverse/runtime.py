"""Where computations run: device choice, threads, seeds."""

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU. Asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: {name!r} is not a device (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device: {name} requested but no CUDA device is available")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device: {name} requested but there are {count} CUDA devices")
    elif device.type != "cpu":
        raise ValueError(f"device: {name!r} is not supported (cpu, cuda, cuda:N or auto)")
    return device


def set_threads(threads: int) -> None:
    """Use exactly the threads Snakemake gave the job."""
    torch.set_num_threads(max(1, int(threads)))


def generator(seed: int) -> torch.Generator:
    """A CPU generator for noise, shuffling and probes (its state goes into checkpoints)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))
