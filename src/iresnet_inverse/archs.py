"""Built-in architecture specs, plain data: the workflow reads them while parsing, so this
module imports no torch (a no-op ``snakemake`` stays fast)."""

from typing import Any

# Table 1 of Arndt & Nickel (2024); ``iresnet_demo`` is ours, sized for the CPU demo.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "iresnet": {"kind": "conv", "blocks": 20, "channels": 64, "hidden": 128, "kernel_size": 5},
    "iresnet_small": {"kind": "conv", "blocks": 12, "channels": 32, "hidden": 64, "kernel_size": 5},
    "iresnet_demo": {"kind": "conv", "blocks": 6, "channels": 8, "hidden": 16, "kernel_size": 5},
    # The demo net without the lifting (one channel): invertible on X itself, so the log-det
    # objective is defined for it (objectives.py); ours.
    "iresnet_demo_unlifted": {
        "kind": "conv",
        "blocks": 6,
        "channels": 1,
        "hidden": 16,
        "kernel_size": 5,
    },
    "toy": {"kind": "dense", "blocks": 6, "dim": 2, "hidden": 64, "layers": 2, "activation": "elu"},
    # Piecewise linear (soft-shrinkage): under Lip(f_i) <= L_i a smooth activation also bounds how
    # fast the Jacobian of f_i can change (|f''| <= ||W_2|| ||W_1||^2 max|act''|), too slowly for
    # the sharp bend of the posterior mean between two modes; kinks have no such bound. For
    # reconstruction training (docs/methods.md, "Bayesian toy study").
    "toy_piecewise": {
        "kind": "dense",
        "blocks": 6,
        "dim": 2,
        "hidden": 64,
        "layers": 2,
        "activation": "softshrink",
    },
}

# Table 1 for unet, convresnet and diffnet (parameter counts: `iresnet-inverse describe`; the U-Net
# has 5,078,609 against Table 1's 5,468,705: docs/methods.md, "Baselines"); the *_demo variants
# are ours, sized for the CPU demo.
# ``tv`` is not a network: its only "training" is the search for alpha.
BASELINES: dict[str, dict[str, Any]] = {
    "unet": {"kind": "unet", "scales": 5, "width": 16, "kernel_size": 5},
    "unet_demo": {"kind": "unet", "scales": 3, "width": 8, "kernel_size": 3},
    "convresnet": {
        "kind": "convresnet",
        "blocks": 20,
        "channels": 64,
        "hidden": 128,
        "kernel_size": 5,
    },
    "convresnet_demo": {
        "kind": "convresnet",
        "blocks": 6,
        "channels": 8,
        "hidden": 16,
        "kernel_size": 5,
    },
    "diffnet": {"kind": "diffnet", "steps": 5, "hidden": 32},
    # Half the width: 27,630 parameters, a training step about 2.9x faster on one core.
    "diffnet_demo": {"kind": "diffnet", "steps": 5, "hidden": 16},
    "tv": {
        "kind": "tv",
        "samples": 12,
        "alpha_min": 1.0e-4,
        "alpha_max": 0.2,
        "tol": 1.0e-4,
        "max_iter": 500,
    },
}

# Readable method names for tables and figures.
LABELS = {
    "iresnet": "iResNet",
    "iresnet_small": "small iResNet",
    "iresnet_demo_unlifted": "iResNet, unlifted (demo)",
    "unet": "U-Net",
    "convresnet": "ConvResNet",
    "diffnet": "DiffNet",
    "tv": "TV",
}


def label(arch: str) -> str:
    """A readable method name: Table 1 names, ``<name> (demo)`` for the demo variants."""
    base, _, suffix = str(arch).partition("_demo")
    name = LABELS.get(str(arch)) or LABELS.get(base, str(arch))
    return f"{name} (demo)" if str(arch).endswith("_demo") and base in LABELS else name
