"""The table data model: printed statistics (:class:`Stat`), rows, tables, labels and the one-decimal format.

Everything here is format-independent; :mod:`.build` fills it from records, :mod:`.render` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FORMATS: tuple[str, ...] = ("markdown", "latex", "csv")
#: Display order of the settings; unknown settings follow alphabetically.
SETTING_ORDER: tuple[str, ...] = ("close-set", "partial", "open-set")
#: Human labels of the record metrics (unknown metrics print their key).
METRIC_LABELS: dict[str, str] = {
    "map_all": "mAP@All",
    "map_all_standard": "mAP@All (plain AP, query mean)",
    "p@1": "P@1",
    "p@5": "P@5",
    "p@15": "P@15",
    "map_at_r": "MAP@R",
    "openset_accuracy": "open-set Acc",
    "false_rejection": "false rejection",
    "openset_binary_accuracy": "open-set Acc (binary, all queries)",
}
#: Metrics where lower is better (best = smallest).
LOWER_IS_BETTER: frozenset[str] = frozenset({"false_rejection"})
MISSING = "–"
MIXED_MARK = "†"
AVG = "Avg"
#: Config keys that place a record in a table cell; every other config key distinguishes variants of a method.
CELL_KEYS = ("method", "dataset", "setting", "query", "gallery", "seed")
OPENSET_ACC = "openset_accuracy"


@dataclass(frozen=True)
class Stat:
    """A printed statistic: mean, std (``None`` = not printed) and the number of seeds behind it."""

    mean: float
    std: float | None
    n: int

    def text(self) -> str:
        if self.std is None:
            return fmt1(self.mean)
        return f"{fmt1(self.mean)}±{fmt1(self.std)}"


def fmt1(x: float) -> str:
    """``x`` with one decimal, halves rounded away from zero as printed tables do (``78.35 -> "78.4"``).

    The value is first rounded to 9 decimals so that binary noise (``78.35`` stored as ``78.3499...``)
    does not decide the rounding.
    """
    d = Decimal(f"{x:.9f}").quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{d:.1f}" if d != 0 else "0.0"


@dataclass
class Row:
    """One table row: ``cells[column]`` (and ``acc[column]`` for open-set mAP tables); ``None`` = missing."""

    label: str
    method: str
    source: str  # "run" or "paper"
    cells: dict[str, Stat | None]
    acc: dict[str, Stat | None] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)  # column -> "best" | "second"
    mixed_code: bool = False  # records of several code fingerprints

    @property
    def shown_label(self) -> str:
        """The label as printed: ``†`` after it when its records come from several code versions."""
        return f"{self.label} {MIXED_MARK}" if self.mixed_code else self.label


@dataclass
class Table:
    """One (dataset, setting) table, independent of the output format."""

    dataset: str
    setting: str
    metric: str
    columns: list[str]  # pair labels, then "Avg"
    rows: list[Row]
    paired: bool  # cells read "mAP / Acc"
    details: list[str]  # caption clauses, plain unicode
    #: The run rows' values behind the cells, one line per record: ``row``, ``method``, ``pair``, ``seed``,
    #: ``value`` (the table's metric) and ``acc`` (open-set Acc, NaN if none). Read by :mod:`.summary`.
    values: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def pairs(self) -> list[str]:
        """The pair columns (every column but ``Avg``)."""
        return [c for c in self.columns if c != AVG]

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "→": r"$\rightarrow$",
    "±": r"$\pm$",
    "—": "---",
    "–": "--",
    "≥": r"$\geq$",
    "†": r"\dag{}",
    "−": r"$-$",
    "Δ": r"$\Delta$",
    "χ": r"$\chi$",
    "²": r"$^2$",
    "α": r"$\alpha$",
    "⁺": r"$^+$",
    "⁻": r"$^-$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (``& % $ # _ { } ~ ^ \\``) and map → ± — – ≥ † − Δ χ ² α ⁺ ⁻ to LaTeX."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
