"""Saliency-map cost: the Jacobian rows of a trained network and of its true operator at the
shared pixel set P (1500 pixels by default) on each named image, batched VJPs as the probes
compute them, beside one backward pass per pixel on a subset (the naive way), in one run.

    .venv/bin/python benchmarks/saliency.py --model results/train/<cell>/model.pt
"""

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from iresnet_inverse import config
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.models import load_model
from iresnet_inverse.operators import get_operator
from iresnet_inverse.probes.saliency import saliency_kernels, sample_pixels

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def _per_pixel_seconds(G: torch.nn.Module, x0: torch.Tensor, pixels: np.ndarray) -> float:
    """Seconds per pixel of the naive way: one forward and one backward pass per pixel."""
    start = time.perf_counter()
    for r, c in pixels:
        x = x0.clone().requires_grad_()
        G(x)[0, 0, r, c].backward()
    return (time.perf_counter() - start) / len(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained cell's model.pt")
    parser.add_argument("--images", default="results/data/images.nc")
    parser.add_argument("--pixels", type=int, default=1500)
    parser.add_argument("--naive", type=int, default=100, help="pixels timed the naive way")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net, meta = load_model(args.model, torch.device("cpu"))
    cell = meta.cell
    settings = config.load(ROOT / "config" / "config.yaml")["operators"]
    settings = settings[cell["operator"]]
    maps = {"network": net.eval(), "operator": get_operator(cell["operator"], **settings).eval()}
    images = read_dataset(args.images)
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; cell {cell}"
    )
    print("| image | size | map | pixels | batched s | naive s/pixel | naive / batched per pixel |")
    print("|---|---|---|---|---|---|---|")
    for name, named in zip(images["name"].values, images["named"].values, strict=True):
        x0 = torch.as_tensor(np.asarray(named, dtype=np.float32))[None, None]
        pixels = sample_pixels(tuple(x0.shape[-2:]), args.pixels)
        for label, G in maps.items():
            start = time.perf_counter()
            saliency_kernels(G, x0, pixels)
            batched = time.perf_counter() - start
            naive = _per_pixel_seconds(G, x0, pixels[: args.naive])
            print(
                f"| {name} | {x0.shape[-2]}x{x0.shape[-1]} | {label} | {len(pixels)} | "
                f"{batched:.2f} | {naive:.4f} | {naive * len(pixels) / batched:.1f}x |"
            )


if __name__ == "__main__":
    main()
