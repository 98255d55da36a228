"""Every network of config/paper.yaml takes one training step and one evaluation at 96x96 on the
CPU (batch 1), so that a GPU user does not find a shape or memory bug after a day in the queue.
Prints each net's step and evaluation time, the peak memory of its process, and a CPU estimate
of one paper epoch (16,284 images at the net's Table 1 batch size, assuming the step time grows
linearly with the batch). ``tests/test_paper_scale.py`` runs the same check.

    .venv/bin/python benchmarks/paper_smoke.py
"""

import argparse
import math
import multiprocessing
import resource
import time
from pathlib import Path
from typing import Any

import torch

from iresnet_inverse import config as study_config
from iresnet_inverse.models import ModelMeta, build_network, reconstruct
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.objectives import loss

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "paper.yaml"


def paper_networks(path: Path = PAPER) -> dict[str, dict[str, Any]]:
    """One cell per architecture of the paper config: arch -> its cell, spec and settings."""
    cfg = study_config.load(path)
    out = {}
    for cell in study_config.cells(cfg):
        if cell.arch not in out:
            out[cell.arch] = {
                "cell": cell,
                "spec": study_config.architecture(cfg, cell.arch),
                "settings": study_config.train_settings(cfg, cell),
                "evaluate": cfg["evaluate"],
                "operator": dict(cfg["operators"][cell.operator]),
                "size": cfg["data"]["patch_size"],
            }
    return out


def step_and_evaluate(net_setup: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """One training step (batch 1) and one evaluation of a fresh net; their times in seconds,
    the loss and the reconstruction, for the caller to check."""
    cell, spec, settings = net_setup["cell"], net_setup["spec"], net_setup["settings"]
    meta = ModelMeta(dict(cell), cell.lipschitz, settings["solver"], net_setup["operator"], 96)
    torch.manual_seed(seed)
    net = build_network(spec, meta)
    operator = meta.operator()
    size = net_setup["size"]
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        z = operator(x) + cell.noise_level * torch.randn_like(x)
    started = time.perf_counter()
    value = float("nan")
    if spec["kind"] != "tv":
        optimizer = torch.optim.Adam(net.parameters(), lr=settings["learning_rate"])
        objective = cell.objective
        result, _ = loss(objective, net, operator, x, z, 0.0, SolverConfig(**settings["solver"]))
        result.backward()
        optimizer.step()
        value = float(result.detach())
    else:
        net.alpha.fill_(1e-2)
    step = time.perf_counter() - started
    net.eval()
    started = time.perf_counter()
    x_hat, _ = reconstruct(
        net, cell.objective, operator, z, SolverConfig(**net_setup["evaluate"]["solver"])
    )
    evaluation = time.perf_counter() - started
    return {"step_s": step, "evaluate_s": evaluation, "loss": value, "x_hat": x_hat}


def _measure(arch: str) -> dict[str, float]:
    """In a fresh process: the times and the process's peak memory (MiB)."""
    torch.set_num_threads(1)
    measured = step_and_evaluate(paper_networks()[arch])
    measured.pop("x_hat")
    measured["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return measured


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    nets = paper_networks()
    images = 16284
    print("| net | step (batch 1) | evaluation | peak memory | CPU epoch estimate |")
    print("| --- | --- | --- | --- | --- |")
    context = multiprocessing.get_context("spawn")
    for arch, setup in nets.items():
        with context.Pool(1) as pool:
            m = pool.apply(_measure, (arch,))
        batch = setup["settings"]["batch_size"]
        epoch_h = math.ceil(images / batch) * batch * m["step_s"] / 3600
        print(
            f"| {arch} | {m['step_s']:.2f} s | {m['evaluate_s']:.2f} s | {m['peak_mib']:.0f} MiB"
            f" | {epoch_h:.1f} h |"
        )


if __name__ == "__main__":
    main()
