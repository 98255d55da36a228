"""What identifies a cell of the study, and where its files live.

One frozen record per kind of cell (an image cell of the training grid, a toy cell of the Bayesian
study). A cell knows its keys (in path order), its directory ``key~value/...`` and the Snakemake
wildcard pattern of that directory: paths are built here and nowhere else. A cell also reads as a
mapping of its keys, so that it is a dataset's coordinates or a JSON object as it is.

Values appear in paths in their shortest exact form, so that a path gives back the value it was
built from: L = 0.9999999 is ``lipschitz~0.9999999`` (not 1), and 0.05 and 0.0500000001 are two
directories.
"""

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Self


def format_value(value: object) -> str:
    """How a cell value appears in paths: floats in their shortest exact form (``repr``), whole
    floats without ``.0`` (``eps~1``), everything else as ``str``."""
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


@dataclasses.dataclass(frozen=True)
class Cell(Mapping[str, Any]):
    """Base of the cell kinds: the fields are the keys, in path order."""

    KEYS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.KEYS = tuple(cls.__annotations__)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # typed values, whatever the caller passed
            object.__setattr__(self, field.name, field.type(getattr(self, field.name)))

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Self:
        """The cell of ``values`` (typed values or strings such as Snakemake wildcards; keys that
        are not the cell's are ignored)."""
        missing = [k for k in cls.KEYS if k not in values]
        if missing:
            raise KeyError(f"{cls.__name__} needs {', '.join(missing)}")
        return cls(**{k: values[k] for k in cls.KEYS})

    @classmethod
    def pattern(cls) -> str:
        """The directory with a wildcard per key: ``operator~{operator}/...``."""
        return "/".join(f"{k}~{{{k}}}" for k in cls.KEYS)

    @property
    def dir(self) -> str:
        """The cell's directory: ``operator~blur/noise_level~0.01/...``."""
        return "/".join(f"{k}~{v}" for k, v in zip(self.KEYS, self.path_values, strict=True))

    def fill(self, pattern: str, **wildcards: str) -> str:
        """A Snakemake output pattern (e.g. ``rules.train.output.model``) for this cell, its other
        wildcards given by name."""
        return pattern.format(**dict(zip(self.KEYS, self.path_values, strict=True)), **wildcards)

    @property
    def path_values(self) -> tuple[str, ...]:
        """The values as they appear in paths: two cells with one key share their files."""
        return tuple(format_value(getattr(self, k)) for k in self.KEYS)

    def __getitem__(self, key: str) -> Any:
        if key not in self.KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)


@dataclasses.dataclass(frozen=True)
class ImageCell(Cell):
    """A cell of the training grid: a network (or TV) trained for one operator and noise level."""

    operator: str
    noise_level: float
    lipschitz: float
    objective: str
    arch: str
    seed: int


@dataclasses.dataclass(frozen=True)
class ToyCell(Cell):
    """A cell of the Bayesian toy study (operator diag(1, eps), see ``toy2d``)."""

    prior: str
    eps: float
    noise_level: float
    lipschitz: float
    objective: str
    noise_factor: float
    seed: int


@dataclasses.dataclass(frozen=True)
class ToyReference(Cell):
    """The test points with exact MAP and posterior mean shared by the toy cells of one problem."""

    prior: str
    eps: float
    noise_level: float


@dataclasses.dataclass(frozen=True)
class Observations(Cell):
    """The observations of one operator at one noise level, shared by the cells that use them."""

    operator: str
    noise_level: float
