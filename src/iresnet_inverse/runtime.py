"""Where computations run: device choice, threads, seeds."""

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU. Asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but no CUDA device is available")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """Use exactly the threads Snakemake gave the job."""
    torch.set_num_threads(max(1, int(threads)))


def generator(seed: int) -> torch.Generator:
    """A CPU generator for noise, shuffling and probes (its state goes into checkpoints)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))
