"""TV's training: a random search of alpha for the best mean validation PSNR."""

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from iresnet_inverse.errors import ConfigError
from iresnet_inverse.metrics import psnr
from iresnet_inverse.tv.discrete import TVResult
from iresnet_inverse.tv.model import tv_reconstruct


@dataclass
class AlphaSearch:
    """Outcome of the random search: the best alpha and every (alpha, mean PSNR) tried."""

    alpha: float
    psnr: float
    table: list[tuple[float, float]] = field(default_factory=list)


def search_alpha(
    operator: torch.nn.Module | None,
    z_val: torch.Tensor,
    x_val: torch.Tensor,
    samples: int = 12,
    low: float = 1e-4,
    high: float = 1.0,
    seed: int = 0,
    tol: float = 1e-3,
    max_iter: int = 500,
    warm_start: bool = True,
    progress: bool = False,
    solver: Callable[..., TVResult] | None = None,
) -> AlphaSearch:
    """Random search (as in the paper) for the alpha maximizing the mean PSNR on validation
    pairs (z_val, x_val): ``samples`` log-uniform draws from [low, high] with ``seed``.

    Cheap by design: all validation images are solved as one batch per alpha, and with
    ``warm_start`` the alphas are visited from the largest down (continuation), each solve
    starting from the previous solution and duals; large alphas converge fast, and each
    smaller one starts close to its minimizer. The default ``tol`` is coarse: on blur it
    understates the table's PSNRs (by about 0.4 dB near the best alpha with warm starts, 1 to
    2 dB without) but picked the same alpha as tol 1e-4 at a sixth of the cost in our checks;
    reconstruct the final images with :func:`tv_reconstruct` at its finer default.
    ``solver`` (default :func:`tv_reconstruct`) takes (operator, z, alpha, tol=, max_iter=,
    x0=, dual0=). Returns the best alpha and the (alpha, mean PSNR) table sorted by alpha.
    """
    if not 0 < low <= high:
        raise ConfigError(f"need 0 < low <= high, got low={low}, high={high}")
    if samples < 1:
        raise ConfigError(f"need at least one sample, got {samples}")
    rng = np.random.default_rng(seed)
    alphas = np.exp(rng.uniform(math.log(low), math.log(high), samples))
    solve = tv_reconstruct if solver is None else solver
    reference = x_val.detach().cpu().double().numpy().reshape(len(x_val), *x_val.shape[-2:])
    table: list[tuple[float, float]] = []
    previous: TVResult | None = None
    bar = tqdm(np.sort(alphas)[::-1], desc="TV alpha search", file=sys.stderr, disable=not progress)
    for a in bar:
        start = {"x0": previous.x, "dual0": previous.dual} if warm_start and previous else {}
        result = solve(operator, z_val, float(a), tol=tol, max_iter=max_iter, **start)
        previous = result
        estimate = result.x.detach().cpu().double().numpy().reshape(reference.shape)
        score = float(np.mean(psnr(reference, estimate)))
        table.append((float(a), score))
        bar.set_postfix(alpha=f"{a:.3g}", psnr=f"{score:.2f}", iters=result.iterations)
    table.sort()
    best_alpha, best_psnr = max(table, key=lambda row: row[1])
    return AlphaSearch(best_alpha, best_psnr, table)
