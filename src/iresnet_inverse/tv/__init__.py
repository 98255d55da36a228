"""Total-variation (TV) reconstruction, the classical baseline for the inverse problems.

Solves, for every image of a batch at once,

    min_x  1/2 ||F(x) - z||^2 + alpha * TV(x),    TV(x) = sum_ij |(grad x)_ij|_2,

with isotropic TV, forward differences and Neumann boundary (the difference across the last
row/column is zero). Images are tensors (batch, 1, H, W); alpha is one float for the batch.
The objective sums over pixels (it is not a mean), so ``alpha`` matches scikit-image's
``denoise_tv_chambolle(weight=alpha)`` for F = identity.

Linear operators (with ``adjoint``) use Chambolle-Pock PDHG on K = [A; grad] (``pdhg``);
nonlinear ones (diffusion) use monotone FISTA with autograd gradients and an inner dual solver
for the TV prox (``fista``). ``discrete`` holds the pieces they share, ``norms`` the power
iteration for their step sizes, ``model`` the dispatch and the ``TotalVariation`` model, and
``search`` the random search of alpha. Modules of the package import the submodules; this
namespace is for users and tests.
"""

from iresnet_inverse.tv.discrete import TVResult, div, grad, total_variation, tv_objective
from iresnet_inverse.tv.fista import tv_fista, tv_prox
from iresnet_inverse.tv.model import TotalVariation, tv_reconstruct
from iresnet_inverse.tv.norms import operator_norm
from iresnet_inverse.tv.pdhg import tv_pdhg
from iresnet_inverse.tv.search import AlphaSearch, search_alpha

__all__ = [
    "AlphaSearch",
    "TVResult",
    "TotalVariation",
    "div",
    "grad",
    "operator_norm",
    "search_alpha",
    "total_variation",
    "tv_fista",
    "tv_objective",
    "tv_pdhg",
    "tv_prox",
    "tv_reconstruct",
]
