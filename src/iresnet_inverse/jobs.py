"""A job's resolved work: its cell and everything it reads, merged from the config once.

The rules resolve a job (``image_job``, ``toy_job``) and pass it to the command line as JSON; the
package reads it as it is and merges nothing again. Only what the job reads is in it, so that a
change elsewhere in the config reruns nothing, and it is the provenance (``config_json``) its
outputs record.
"""

import copy
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from iresnet_inverse.cells import Cell, ImageCell, ToyCell
from iresnet_inverse.config import (
    architecture,
    toy_arch,
    toy_train_settings,
    toy_training_points,
    train_settings,
    validate,
)
from iresnet_inverse.errors import ConfigError
from iresnet_inverse.registry import BASELINE_OBJECTIVES, INVERTIBLE_KINDS, OBJECTIVES

CELL_KINDS: dict[str, type[Cell]] = {"image": ImageCell, "toy": ToyCell}


@dataclasses.dataclass(frozen=True)
class Job:
    """A cell with its resolved training settings, its architecture's spec, its operator's
    parameters, the device (and whether it runs deterministic algorithms only), and the config
    sections the job reads as they are (``data``, ``evaluate``, ``analysis``, ``toy2d``)."""

    cell: ImageCell | ToyCell
    settings: dict[str, Any]
    spec: dict[str, Any]
    operator_params: dict[str, Any]
    device: str = "auto"
    sections: dict[str, Any] = dataclasses.field(default_factory=dict)
    deterministic: bool = False

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        kind = next(k for k, t in CELL_KINDS.items() if isinstance(self.cell, t))
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not self.deterministic:  # the default leaves the JSON, so no job reruns, as it was
            del record["deterministic"]
        return {**record, "cell": dict(self.cell), "kind": kind}

    @classmethod
    def from_json(cls, text: str) -> "Job":
        """The job a rule passed; a clear error for anything but a job's JSON."""
        try:
            record = json.loads(text)
            cell = CELL_KINDS[record.pop("kind")].of(record.pop("cell"))
            job = cls(cell=cell, **record)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"--job-json is not a job ({type(err).__name__}: {err})") from None
        try:  # values a rule would never pass (a hand-edited job): one line, not a traceback
            complete = validate(copy.deepcopy(job.settings), "train")
        except ConfigError as err:
            raise ConfigError(f"--job-json settings: {err}") from None
        try:  # the net's spec as config.archs would take it (a channel count of 0, say)
            validate({"archs": {"spec": copy.deepcopy(dict(job.spec))}})
        except ConfigError as err:
            raise ConfigError(f"--job-json spec: {err}") from None
        missing = sorted(set(complete) - set(job.settings))  # a rule passes them all, resolved
        if missing:
            raise ConfigError(f"--job-json settings: lack {', '.join(missing)}")
        _check_cell(job)
        return job

    def section(self, name: str) -> Any:
        if name not in self.sections:
            raise ConfigError(f"job of {self.cell.dir} lacks config section {name!r}")
        return self.sections[name]


def _check_cell(job: Job) -> None:
    """The cell's values as the grid would take them: L in (0, 1) for an invertible net (inf
    for a baseline), an objective of its kind, a seed a generator takes."""
    cell, kind = job.cell, job.spec.get("kind")
    invertible = kind in INVERTIBLE_KINDS
    objectives = OBJECTIVES if invertible else (BASELINE_OBJECTIVES.get(kind),)
    problems = []
    if invertible and not 0 < cell.lipschitz < 1:
        problems.append(f"lipschitz {cell.lipschitz} is not in (0, 1)")
    if cell.objective not in objectives:
        problems.append(f"objective {cell.objective!r} is not one of {list(objectives)}")
    if not 0 <= cell.seed <= 2**32 - 1:
        problems.append(f"seed {cell.seed} is not in [0, 4294967295]")
    if problems:
        raise ConfigError(f"--job-json cell {cell.dir}: {'; '.join(problems)}")


def image_job(config: Mapping[str, Any], cell: ImageCell, sections: tuple[str, ...] = ()) -> Job:
    """The job of an image cell: training settings merged (``train``, the arch's ``train``, the
    grid block's ``train``), the arch's spec and the operator's parameters looked up."""
    return Job(
        cell=cell,
        settings=train_settings(config, cell),
        spec=architecture(config, cell.arch),
        operator_params=dict(config["operators"][cell.operator]),
        device=config["device"],
        deterministic=config["deterministic"],
        sections={s: config[s] for s in sections},
    )


def toy_job(config: Mapping[str, Any], cell: ToyCell) -> Job:
    """The job of a toy cell: ``train``, ``toy2d.train`` and the toy block's ``train`` merged,
    the block's ``arch`` (else ``toy2d.arch``); ``toy2d`` without its grid, with the block's
    ``training_points`` (else ``toy2d``'s)."""
    toy = {k: v for k, v in config["toy2d"].items() if k not in ("grid", "train")}
    toy["training_points"] = toy_training_points(config, cell)
    return Job(
        cell=cell,
        settings=toy_train_settings(config, cell),
        spec=architecture(config, toy_arch(config, cell)),
        operator_params={},
        device=config["device"],
        sections={"toy2d": toy},
    )
