"""The paper's Table 1 as recovered (results/paper/table1.json): a value and a source per cell,
and nothing for the cells that were not recovered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PAPER_TABLE = Path(__file__).resolve().parents[1] / "results" / "paper" / "table1.json"


@dataclass(frozen=True)
class PaperCell:
    value: float | None
    source: str


def load_paper_table(path: Path = PAPER_TABLE) -> dict:
    table = json.loads(path.read_text())
    for model, cells in table["rows"].items():
        for bench, cell in cells.items():
            if bench not in table["benchmarks"]:
                raise ValueError(f"{path}: {model} has a cell for unknown benchmark {bench!r}")
            if not isinstance(cell.get("value"), (int, float)) or not cell.get("source"):
                raise ValueError(f"{path}: {model}/{bench} needs a numeric value and a source")
    return table


def paper_cell(table: dict, model: str, benchmark: str) -> PaperCell:
    cell = table["rows"].get(model, {}).get(benchmark)
    return PaperCell(None, "not recovered") if cell is None else PaperCell(float(cell["value"]), cell["source"])
