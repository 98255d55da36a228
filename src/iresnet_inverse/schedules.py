"""Learning-rate schedules as the factor of the base rate at each optimizer step."""

import math
from collections.abc import Callable

from iresnet_inverse.history import History, plateau_window


def _cosine(t: float) -> float:
    """From 1 at t = 0 to 0.01 at t >= 1."""
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def rate_factor(
    schedule: str, epochs: int, warmup_epochs: int, steps_per_epoch: int, history: History
) -> Callable[[int], float]:
    """The schedule's factor at each step (cosine, constant or plateau over ``epochs``), times
    a linear warmup over the first ``warmup_epochs``. The plateau schedule reads ``history``,
    which training updates in place."""
    factor = _schedule(schedule, epochs * steps_per_epoch, steps_per_epoch, history)
    warmup = warmup_epochs * steps_per_epoch
    if not warmup:
        return factor
    return lambda step: min(1.0, (step + 1) / warmup) * factor(step)


def _schedule(
    schedule: str, total_steps: int, steps_per_epoch: int, history: History
) -> Callable[[int], float]:
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "plateau":

        def rate(step: int) -> float:
            found = history.plateau_epoch
            if not found:
                return 1.0
            decay = plateau_window(found) * steps_per_epoch  # its last step at 1 % of the rate
            return _cosine((step + 1 - found * steps_per_epoch) / decay)

        return rate
    return lambda step: _cosine(step / total_steps)
