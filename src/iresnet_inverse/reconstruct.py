"""Reconstruction by inverting trained iResNets; evaluation of one cell on the test split."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from iresnet_inverse import objectives
from iresnet_inverse.analysis.metrics import mse, psnr, ssim
from iresnet_inverse.artifacts import variable
from iresnet_inverse.nets.iresnet import InverseResult, IResNet
from iresnet_inverse.nets.solvers import SolverConfig


def reconstruct(
    net: torch.nn.Module,
    objective: str,
    operator: torch.nn.Module,
    z: torch.Tensor,
    solver: SolverConfig,
    batch_size: int = 64,
) -> tuple[torch.Tensor, InverseResult | None]:
    """phi^-1 of the objective's reconstruction input (z, or F*z for divergence), in batches,
    without gradients. Returns the reconstructions and the concatenated solver statistics.
    A baseline (any net that is not an iResNet) maps z to x directly; its statistics are None."""
    if not isinstance(net, IResNet):
        with torch.no_grad():
            return torch.cat([net(chunk) for chunk in torch.split(z, batch_size)]), None
    outs, results = [], []
    for chunk in torch.split(z, batch_size):
        with torch.no_grad():
            inp = objectives.reconstruction_input(objective, operator, chunk)
            result = net.inverse(inp, solver)
        outs.append(result.x)
        results.append(result)
    merged = InverseResult(
        torch.cat(outs),
        torch.cat([r.iterations for r in results]),
        torch.cat([r.residual for r in results]),
        torch.cat([r.converged for r in results]),
        [],
    )
    return merged.x, merged


# What phi(x) is compared with in forward_mse/forward_ssim: its training target without noise.
FORWARD_TARGETS = {
    "forward": "F(x)",
    "normal": "its training target F*F(x) (F* the adjoint; DF(F(x))^T F(x) if F is nonlinear)",
}


def forward_target(
    objective: str, operator: torch.nn.Module, clean: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """The noise-free version of what phi(x) is trained to match, from clean = F(x): F(x)
    itself, or for the divergence objective (whose loss is 1/2 ||phi(x) - F*z||^2 - ...) the
    normal data F*F(x) = ``objectives.normal_data(F, F(x))``, in batches."""
    if objective != "divergence":
        return clean
    with torch.no_grad():
        return torch.cat(
            [objectives.normal_data(operator, chunk) for chunk in torch.split(clean, batch_size)]
        )


def evaluate_cell(
    net: torch.nn.Module,
    cell: Mapping[str, Any],
    operator: torch.nn.Module,
    images: xr.Dataset,
    observations: xr.Dataset,
    solver: SolverConfig,
    batch_size: int = 64,
    certificate: list[float] | None = None,
) -> xr.Dataset:
    """Per test image: reconstruction quality, inversion error, forward approximation, solver
    statistics and the data's own quality; plus reconstructions of the named images. For
    baselines, which learn no forward operator, the iResNet-only variables are NaN."""
    from iresnet_inverse.data.observations import paired_split

    device = next(iter(net.state_dict().values())).device
    objective = cell["objective"]
    target_name = "normal" if objective == "divergence" else "forward"
    x, clean, z = paired_split(images, observations, "test")
    x_t = torch.as_tensor(x)[:, None].to(device)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a)[:, None].to(device)

    def numpy(t: torch.Tensor) -> np.ndarray:
        return t[:, 0].double().cpu().numpy()

    x_hat, stats = reconstruct(net, objective, operator, tensor(z), solver, batch_size)
    x_hat = numpy(x_hat)
    obs = observations.isel({d: 0 for d in ("operator", "noise_level") if d in observations.dims})
    named_hat, _ = reconstruct(
        net, objective, operator, tensor(obs["named_data"].values), solver, batch_size
    )
    named = images["named"].values.astype(np.float32)
    if isinstance(net, IResNet):
        x_clean_hat, _ = reconstruct(net, objective, operator, tensor(clean), solver, batch_size)
        with torch.no_grad():
            forward = numpy(torch.cat([net(chunk) for chunk in torch.split(x_t, batch_size)]))
            named_forward = numpy(net(tensor(named)))
        diff = (numpy(x_clean_hat) - x).reshape(len(x), -1)
        inversion_error = np.sqrt((diff**2).sum(axis=1))
        target = numpy(forward_target(objective, operator, tensor(clean), batch_size))
        forward_mse, forward_ssim = mse(target, forward), ssim(target, forward)
        iterations = stats.iterations.float().mean(dim=1).cpu().numpy()
        residual = stats.residual.max(dim=1).values.cpu().numpy()
        converged = stats.converged.cpu().numpy().astype(np.int8)
    else:
        nan = np.full(len(x), np.nan)
        inversion_error, forward_mse, forward_ssim, iterations, residual = (nan,) * 5
        named_forward = np.full(named.shape, np.nan, dtype=np.float32)
        converged = np.ones(len(x), dtype=np.int8)
    ds = xr.Dataset(
        {
            "psnr": variable(("image",), psnr(x, x_hat), "PSNR of the reconstruction", "dB"),
            "ssim": variable(("image",), ssim(x, x_hat), "SSIM of the reconstruction"),
            "mse": variable(("image",), mse(x, x_hat), "MSE of the reconstruction"),
            "inversion_error": variable(
                ("image",), inversion_error, "inversion error ||phi^-1(F(x)) - x|| (eq. 2.6)"
            ),
            "forward_mse": variable(
                ("image",), forward_mse, f"MSE of phi(x) against {FORWARD_TARGETS[target_name]}"
            ),
            "forward_ssim": variable(
                ("image",), forward_ssim, f"SSIM of phi(x) against {FORWARD_TARGETS[target_name]}"
            ),
            "data_psnr": variable(("image",), psnr(x, z), "PSNR of the noisy data", "dB"),
            "data_ssim": variable(("image",), ssim(x, z), "SSIM of the noisy data"),
            "solver_iterations": variable(
                ("image",),
                iterations,
                "residual evaluations per block in the inverse (mean over blocks)",
            ),
            "solver_residual": variable(
                ("image",), residual, "largest final relative residual over blocks"
            ),
            "converged": variable(("image",), converged, "inverse reached rtol"),
            "named_reconstruction": variable(
                ("name", "ny", "nx"), numpy(named_hat).astype(np.float32), "reconstruction"
            ),
            "named_forward": variable(
                ("name", "ny", "nx"), np.asarray(named_forward, dtype=np.float32), "phi(x)"
            ),
            "named_truth": variable(("name", "ny", "nx"), named, "ground truth x"),
            "named_data": variable(
                ("name", "ny", "nx"), obs["named_data"].values.astype(np.float32), "noisy data z"
            ),
            "named_clean_data": variable(
                ("name", "ny", "nx"),
                obs["named_clean_data"].values.astype(np.float32),
                "noise-free data F(x)",
            ),
        },
        coords={"image": np.arange(len(x)), "name": images["name"].values},
    )
    for name in ("forward_mse", "forward_ssim"):
        ds[name].attrs["forward_target"] = target_name
    if certificate:
        ds["lipschitz_certificate"] = variable(
            ("block",), np.array(certificate), "per-block Lipschitz certificate"
        )
    return ds


def evaluate_model_file(
    model_path: str | Path,
    images_path: str | Path,
    observations_path: str | Path,
    config: Mapping[str, Any],
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Load a trained cell and evaluate it on the test split."""
    import warnings

    from iresnet_inverse.artifacts import read_dataset
    from iresnet_inverse.operators import get_operator
    from iresnet_inverse.runtime import resolve_device
    from iresnet_inverse.train import load_model

    device = resolve_device(config.get("device", "auto"))
    net, meta = load_model(model_path, device)
    cell = meta["cell"]
    operator = get_operator(cell["operator"], **config["operators"][cell["operator"]]).to(device)
    solver = SolverConfig(**config["evaluate"]["solver"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        ds = evaluate_cell(
            net,
            cell,
            operator,
            read_dataset(images_path),
            read_dataset(observations_path),
            solver,
            config["evaluate"]["batch_size"],
            meta.get("certificate"),
        )
    failed = int((ds["converged"] == 0).sum())
    ds.attrs["nonconverged_samples"] = failed
    if failed or caught:
        print(
            f"warning: {failed} of {ds.sizes['image']} test reconstructions did not reach rtol "
            f"{solver.tol:g}",
            flush=True,
        )
    return ds, cell
