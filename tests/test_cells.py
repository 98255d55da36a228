"""Cells: typed values, directories that give back the values they were built from."""

import re

import pytest

from iresnet_inverse import config
from iresnet_inverse.cells import ImageCell, ToyCell, format_value


def _from_dir(kind: type[ImageCell] | type[ToyCell], path: str) -> ImageCell | ToyCell:
    """Parse a directory as Snakemake does: match the wildcard pattern, then type the strings."""
    regex = re.escape(kind.pattern()).replace(r"\{", "{").replace(r"\}", "}")
    regex = re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", regex)
    return kind.of(re.fullmatch(regex, path).groupdict())


@pytest.mark.parametrize("lipschitz", [0.9999999, 0.999, 0.95, 1e-05, 0.1 + 0.2, float("inf")])
@pytest.mark.parametrize("noise_level", [0.05, 0.0500000001, 1.0, 2.5e-3])
def test_a_cell_directory_gives_back_its_values(lipschitz: float, noise_level: float) -> None:
    cell = ImageCell("blur", noise_level, lipschitz, "logdet", "iresnet_demo", 3)
    assert _from_dir(ImageCell, cell.dir) == cell
    assert _from_dir(ImageCell, cell.dir).lipschitz == lipschitz  # exactly, not to 6 digits


def test_close_values_are_distinct_cells_and_whole_floats_keep_their_short_names() -> None:
    cfg = config.validate(
        {
            "grid": [
                {
                    "operator": ["blur"],
                    "noise_level": [0.05, 0.0500000001],
                    "lipschitz": [0.9999999, 0.999],
                    "objective": ["reconstruction"],
                    "arch": ["iresnet_demo"],
                }
            ]
        }
    )
    cells = config.cells(cfg)
    assert len({c.dir for c in cells}) == 4
    assert "lipschitz~0.9999999/" in cells[0].dir
    assert format_value(1.0) == "1" and format_value(0.01) == "0.01" and format_value(3) == "3"


def test_a_cell_is_typed_and_reads_as_a_mapping() -> None:
    cell = ToyCell.of(
        {
            "prior": "bimodal",
            "eps": "0.1",
            "noise_level": "0.2",
            "lipschitz": "0.99",
            "objective": "logdet",
            "noise_factor": "1",
            "seed": "0",
            "unrelated": "ignored",
        }
    )
    assert cell.eps == 0.1 and cell.seed == 0 and isinstance(cell.noise_factor, float)
    assert list(cell) == list(ToyCell.KEYS) and cell["prior"] == "bimodal"
    assert dict(cell)["noise_level"] == 0.2
    assert cell.dir.startswith("prior~bimodal/eps~0.1/") and cell.dir.endswith("/seed~0")
    with pytest.raises(KeyError, match="noise_factor"):
        ToyCell.of({k: v for k, v in cell.items() if k != "noise_factor"})
    with pytest.raises(ValueError):
        ImageCell("blur", "not a number", 0.9, "reconstruction", "tiny", 0)
