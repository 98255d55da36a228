"""``iresnet-inverse describe``: the architectures a config trains, their kind and size, beside
the sizes in the paper's Table 1 for the built-in specs."""

from typing import Any

from iresnet_inverse.archs import ARCHITECTURES, BASELINES
from iresnet_inverse.config import architecture, cells
from iresnet_inverse.models import ModelMeta, build_network
from iresnet_inverse.nets.model import count_parameters

# Trainable parameters in Table 1 of Arndt & Nickel (2024), shown beside ours for the built-in
# specs (docs/methods.md, "Baselines": why our U-Net has fewer).
TABLE1 = {
    "iresnet": 4_263_700,
    "iresnet_small": 640_140,
    "diffnet": 101_310,
    "unet": 5_468_705,
    "convresnet": 4_263_873,
}


def describe(cfg: dict[str, Any]) -> str:
    """One line per architecture of the grid (kind, parameters, Table 1's count), a header
    and the number of training cells."""
    size = cfg["data"]["patch_size"]
    archs = list(dict.fromkeys(cell["arch"] for cell in cells(cfg)))
    w = max(18, *(len(a) for a in archs))
    lines = [f"{'arch':<{w}} {'kind':<11} {'parameters':>12} {'Table 1':>12}   (patch size {size})"]
    for arch in archs:
        spec = architecture(cfg, arch)
        cell = next(c for c in cells(cfg) if c["arch"] == arch)
        meta = ModelMeta(
            cell=cell,
            lipschitz=min(float(cell["lipschitz"]), 0.5),
            solver={},
            operator_params=cfg["operators"][cell["operator"]],
        )
        net = build_network(spec, meta)
        builtin = {**ARCHITECTURES, **BASELINES}.get(arch)
        paper = f"{TABLE1[arch]:>12,}" if arch in TABLE1 and spec == builtin else ""
        lines.append(
            f"{arch:<{w}} {spec['kind']:<11} {count_parameters(net):>12,} {paper}".rstrip()
        )
    lines.append(f"{len(cells(cfg))} training cells")
    return "\n".join(lines)
