"""Directions of strongest learned regularization (Arndt & Nickel 2024, Sec. 4.3.1).

For an image x0 we look for a unit direction h maximizing

    J(h) = ||D phi(x0) h||^2 - ||D F(x0) h||^2,

a direction that the network phi keeps while the true operator F nearly annihilates it: there
phi regularizes. At fixed x0, J is a
quadratic form h^T A h with A = D phi^T D phi - D F^T D F, so its gradient 2 A h costs one JVP
(torch.func.jvp) and one VJP (torch.func.vjp, linearized once at x0) per map. The ascent is
projected onto the unit sphere of the allowed directions (optionally only pixels of a mask).
Restarts run together, vectorized with torch.func.vmap. The maximizer is not unique (the
paper notes this too); the directions are examples.

What the Lipschitz constraint guarantees, and where. An image network is phi = mean o Phi o c
with c(v) = (v, ..., v) the copy into X^M and Phi the invertible core on X^M (paper Sec. 4.1).
Lip(Phi^-1) <= 1/(1 - L) gives ||D Phi(w) k|| >= (1 - L) ||k|| for every k in X^M; in a diagonal
direction k = c h, with ||c h|| = sqrt(M) ||h||, that is

    ||D Phi(c x0)(c h)|| / sqrt(M) >= (1 - L) ||h||        (``lifted_directional_norms``).

The paper's ||D phi(x0) h|| >= 1 - L is *not* a guarantee once M > 1: the channel mean can
cancel what Phi keeps (two channels, two linear blocks, each rotating the channel pair, make
phi the zero map; tests/test_analysis.py builds it). Since ||mean(u)|| <= ||u|| / sqrt(M),
||D phi(x0) h|| is at most the lifted norm, and the two agree for M = 1 or unlifted nets.

Also here: the rule for the "subject" of a named image (``subject_mask``) and a loader for
user-given masks (``load_mask``).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage.filters import gaussian, threshold_otsu
from torch.func import jvp, vjp, vmap

from iresnet_inverse.nets.iresnet import IResNet
from iresnet_inverse.nets.model import Model

ImageMap = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DirectionalResult:
    """The best direction over all restarts and how the two maps act on it.

    ``direction`` has the shape of x0 and unit norm (zero outside ``mask``);
    ``trace`` holds J after every accepted or rejected step of the best restart (entry 0 is
    the random start); ``restart_objectives`` the final J of every restart.
    """

    direction: torch.Tensor
    phi_norm: float  # ||D phi(x0) h|| (no lower bound for a lifted phi; module docstring)
    operator_norm: float  # ||D F(x0) h||
    objective: float  # phi_norm^2 - operator_norm^2
    trace: np.ndarray
    restart_objectives: np.ndarray
    steps: int  # iterations run (equal for all restarts)
    mask: torch.Tensor | None


def _project(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero h outside the mask and scale each restart (leading dim) to unit norm."""
    if mask is not None:
        h = h * mask
    norms = h.flatten(1).norm(dim=1).clamp_min(torch.finfo(h.dtype).tiny)
    return h / norms.view(-1, *([1] * (h.ndim - 1)))


def _linear_maps(
    G: ImageMap, x0: torch.Tensor
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """D G(x0) and D G(x0)^T, both vectorized over a leading restart dimension."""
    _, vjp_fn = vjp(G, x0)
    forward = vmap(lambda h: jvp(G, (x0,), (h,))[1])
    adjoint = vmap(lambda u: vjp_fn(u)[0])
    return forward, adjoint


def _mask_tensor(mask: torch.Tensor | np.ndarray | None, x0: torch.Tensor) -> torch.Tensor | None:
    """The mask as a 0/1 tensor shaped like x0 (None: every pixel)."""
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask_t = torch.as_tensor(np.asarray(mask, dtype=bool), device=x0.device)
    mask_t = mask_t.reshape(x0.shape[-2:]).expand_as(x0).to(x0.dtype)
    if not bool(mask_t.any()):
        raise ValueError("the mask selects no pixel")
    return mask_t


@torch.no_grad()  # torch.func differentiates anyway; no graph through the parameters
def max_regularization_direction(
    phi: ImageMap,
    operator: ImageMap,
    x0: torch.Tensor,
    mask: torch.Tensor | np.ndarray | None = None,
    restarts: int = 4,
    steps: int = 200,
    step_size: float = 0.25,
    tol: float | None = None,
    seed: int = 0,
) -> DirectionalResult:
    """Projected gradient ascent of J(h) = ||D phi(x0) h||^2 - ||D F(x0) h||^2 over unit h.

    x0 is one image (1, 1, H, W). Each restart starts from seeded Gaussian noise (a CPU
    ``torch.Generator`` seeded with ``seed``, so results do not depend on the device), and
    iterates h <- P(h + step_size * g), g the gradient 2 A h minus its radial part, P the
    projection onto unit directions supported on ``mask``. A step that would decrease J is
    rejected and that restart's step size halved (a safeguard: at fixed step size the ascent
    can overshoot when A has large eigenvalues of both signs). With ``tol`` the iteration
    stops early once no restart improves J by more than ``tol * max(|J|, 1)`` in a step and
    no step was rejected. Networks should be in ``eval()`` mode.
    """
    if x0.ndim != 4 or x0.shape[:2] != (1, 1):
        raise ValueError(f"x0 must have shape (1, 1, H, W), got {tuple(x0.shape)}")
    if restarts < 1 or steps < 0 or step_size <= 0:
        raise ValueError("need restarts >= 1, steps >= 0 and step_size > 0")
    x0 = x0.detach()
    mask_t = _mask_tensor(mask, x0)

    phi_fwd, phi_adj = _linear_maps(phi, x0)
    op_fwd, op_adj = _linear_maps(operator, x0)

    def evaluate(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, v = phi_fwd(h), op_fwd(h)
        return u, v, u.flatten(1).pow(2).sum(1) - v.flatten(1).pow(2).sum(1)

    generator = torch.Generator().manual_seed(seed)
    h = torch.randn((restarts, *x0.shape), generator=generator, dtype=torch.float64)
    h = _project(h.to(dtype=x0.dtype, device=x0.device), mask_t)
    u, v, objective = evaluate(h)
    eta = torch.full((restarts,), float(step_size), dtype=x0.dtype, device=x0.device)
    trace = [objective]
    steps_run = 0
    for _ in range(steps):
        steps_run += 1
        grad = _tangent_gradient(phi_adj(u), op_adj(v), h, mask_t)
        trial = _project(h + eta.view(-1, *([1] * x0.ndim)) * grad, mask_t)
        u_t, v_t, objective_t = evaluate(trial)
        accept = objective_t >= objective
        gain = torch.where(accept, objective_t - objective, torch.zeros_like(objective))
        keep = accept.view(-1, *([1] * x0.ndim))
        h = torch.where(keep, trial, h)
        u, v = torch.where(keep, u_t, u), torch.where(keep, v_t, v)
        objective = torch.where(accept, objective_t, objective)
        eta = torch.where(accept, eta, eta / 2)
        trace.append(objective)
        scale = objective.abs().clamp_min(1.0)
        if tol is not None and bool(accept.all()) and bool((gain <= tol * scale).all()):
            break
    return _best_restart(h, u, v, objective, trace, steps_run, mask_t)


def _tangent_gradient(
    phi_adj_u: torch.Tensor, op_adj_v: torch.Tensor, h: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """The gradient 2 A h = 2 (D phi^T u - D F^T v) of J, zero outside the mask, less its
    radial part (the component along h), so that a step moves along the unit sphere."""
    grad = 2.0 * (phi_adj_u - op_adj_v)
    if mask is not None:
        grad = grad * mask
    radial = (grad * h).flatten(1).sum(1)
    return grad - radial.view(-1, *([1] * (h.ndim - 1))) * h


def _best_restart(
    h: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    objective: torch.Tensor,
    trace: list[torch.Tensor],
    steps: int,
    mask: torch.Tensor | None,
) -> DirectionalResult:
    """The restart with the largest J, with its norms and trace, and every restart's J."""
    best = int(torch.argmax(objective))
    return DirectionalResult(
        direction=h[best].detach(),
        phi_norm=float(u[best].norm()),
        operator_norm=float(v[best].norm()),
        objective=float(objective[best]),
        trace=torch.stack(trace)[:, best].detach().cpu().numpy(),
        restart_objectives=objective.detach().cpu().numpy(),
        steps=steps,
        mask=None if mask is None else mask[0, 0].bool(),
    )


@torch.no_grad()
def directional_norms(G: ImageMap, x0: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """||D G(x0) h|| for each direction h of a stack (n, 1, H, W), e.g. phi vs F on one h."""
    forward, _ = _linear_maps(G, x0.detach())
    return forward(directions.unsqueeze(1)).flatten(1).norm(dim=1)


def lifted_core(net: torch.nn.Module) -> tuple[ImageMap, int] | None:
    """(x -> Phi(c x), M) for an iResNet (M = 1 when it does not lift), else None."""
    return net.lifted_core() if isinstance(net, Model) else None


@torch.no_grad()
def lifted_directional_norms(
    net: IResNet, x0: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """||D Phi(c x0)(c h)|| / sqrt(M) for each direction h of a stack (n, 1, H, W).

    Phi is the iResNet's invertible core on X^M and c the copy X -> X^M; the division by
    sqrt(M) = ||c h|| / ||h|| makes this the gain per unit of ||h||. By Lip(Phi^-1) <= 1/(1 - L)
    it is >= (1 - L) ||h|| for every h: the lower bound the Lipschitz constraint guarantees
    (unlike ||D phi(x0) h||, which it bounds from above; module docstring).
    """
    core = lifted_core(net)
    if core is None:
        raise TypeError(f"need an IResNet, got {type(net).__name__}")
    G, channels = core
    return directional_norms(G, x0, directions) / math.sqrt(channels)


# --- the subject of an image ------------------------------------------------------------------


def subject_mask(
    image: np.ndarray | torch.Tensor,
    rule: str = "otsu",
    sigma: float = 2.0,
    fraction: float = 0.5,
) -> np.ndarray:
    """A reproducible boolean mask (H, W) of an image's subject, for restricting h to it.

    ``rule="otsu"`` (default): smooth the image with a Gaussian of ``sigma`` pixels, split it
    at Otsu's threshold, call "background" the class that covers more of the image border
    (photographs frame their subject), take the largest 8-connected component of the other
    class and fill its holes. ``rule="ellipse"``: the image-independent centred ellipse with
    the frame's aspect ratio covering ``fraction`` of the frame. The Otsu rule falls back to
    the ellipse for a constant image.
    """
    img = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    img = np.squeeze(img).astype(np.float64)
    if img.ndim != 2:
        raise ValueError(f"subject_mask needs one 2D image, got shape {img.shape}")
    if rule == "ellipse" or (rule == "otsu" and np.ptp(img) == 0):
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        h, w = img.shape
        r, c = np.mgrid[:h, :w]
        y, x = (r - (h - 1) / 2) / (h / 2), (c - (w - 1) / 2) / (w / 2)
        # the ellipse y^2 + x^2 <= s^2 covers pi s^2 / 4 of the frame
        return y**2 + x**2 <= 4 * fraction / np.pi
    if rule != "otsu":
        raise ValueError(f"unknown subject rule {rule!r}; valid: otsu, ellipse")
    smooth = gaussian(img, sigma=sigma, mode="nearest")
    bright = smooth > threshold_otsu(smooth)
    border = np.concatenate([bright[0], bright[-1], bright[1:-1, 0], bright[1:-1, -1]])
    subject = ~bright if border.mean() > 0.5 else bright
    labels, count = ndimage.label(subject, structure=np.ones((3, 3), bool))
    if count == 0:
        return subject_mask(img, "ellipse", fraction=fraction)
    sizes = np.bincount(labels.ravel())[1:]
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A user-drawn mask from ``.npy`` (nonzero = inside) or ``.png`` (gray value > 127 = inside).

    Leading singleton dimensions are dropped; the result must have ``shape`` (H, W) and
    select at least one pixel.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = np.load(path, allow_pickle=False)
        mask = np.asarray(data) != 0
    elif suffix == ".png":
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > 127
    else:
        raise ValueError(f"mask file must be .npy or .png, got {path.name}")
    while mask.ndim > 2 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != tuple(shape):
        raise ValueError(f"mask {path.name} has shape {mask.shape}, expected {tuple(shape)}")
    if not mask.any():
        raise ValueError(f"mask {path.name} selects no pixel")
    return mask
