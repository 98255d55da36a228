"""Networks: Lipschitz layers, iResNets, fixed-point solvers, implicit gradients, baselines."""
