"""Tables of the study report, rendered as Markdown (report.md) and as booktabs LaTeX (tables.tex),
written directly (no pandas, no jinja). A `Table` holds text cells; the number formats are here
too, so both renderings show the same digits."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

MISSING = "n/a"
_LATEX_SPECIALS = {
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
}
_LATEX_PATTERN = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIALS))


@dataclass(frozen=True)
class Table:
    """`align`: one of l, r, c per column (default: the first left, the rest right)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()
    align: str | None = None
    label: str | None = None  # LaTeX \label

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table '{self.title}': row {i} has {len(row)} cells for "
                    f"{len(self.columns)} columns"
                )
        if self.align is not None and (
            len(self.align) != len(self.columns) or set(self.align) - set("lrc")
        ):
            raise ValueError(f"table '{self.title}': align '{self.align}' must be l/r/c per column")

    @property
    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.columns) - 1)


def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    notes: Sequence[str] = (),
    align: str | None = None,
    label: str | None = None,
) -> Table:
    return Table(title, tuple(columns), tuple(tuple(r) for r in rows), tuple(notes), align, label)


# --- numbers ---------------------------------------------------------------------------------


def number(value: float | int | None, digits: int = 4) -> str:
    """`digits` significant digits; n/a for None or a non-finite value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def p_value(value: float | None) -> str:
    return number(value, 3)


def interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return MISSING
    return f"[{number(low)}, {number(high)}]"


def estimate(mean: float | None, low: float | None, high: float | None) -> str:
    """`mean [low, high]`, or the mean alone where the interval is undefined."""
    if low is None or high is None:
        return number(mean)
    return f"{number(mean)} {interval(low, high)}"


# --- Markdown ---------------------------------------------------------------------------------


def _markdown_cell(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def markdown(t: Table, level: int = 4) -> str:
    """A heading, a pipe table (right-aligned numbers) and the notes as a list."""
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [f"{'#' * level} {t.title}", ""]
    if t.rows:
        lines.append("| " + " | ".join(_markdown_cell(c) for c in t.columns) + " |")
        lines.append("|" + "|".join(marks[a] for a in t.alignment) + "|")
        lines.extend("| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in t.rows)
    else:
        lines.append("(no rows)")
    if t.notes:
        lines.append("")
        lines.extend(f"- {note}" for note in t.notes)
    return "\n".join(lines) + "\n"


# --- LaTeX ------------------------------------------------------------------------------------


def escape_latex(text: str) -> str:
    """Every LaTeX special character escaped, so any name or number prints as given."""
    return _LATEX_PATTERN.sub(lambda match: _LATEX_SPECIALS[match.group()], text)


def latex(t: Table) -> str:
    """A booktabs `table` (needs `\\usepackage{booktabs}`): caption, toprule, header, midrule,
    rows, bottomrule; the notes below the tabular in footnotesize."""
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\small",
        r"\caption{" + escape_latex(t.title) + "}",
    ]
    if t.label:
        lines.append(r"\label{" + re.sub(r"[^A-Za-z0-9:._-]", "-", t.label) + "}")
    lines += [
        r"\begin{tabular}{" + t.alignment + "}",
        r"\toprule",
        " & ".join(escape_latex(c) for c in t.columns) + r" \\",
        r"\midrule",
    ]
    lines.extend(" & ".join(escape_latex(c) for c in row) + r" \\" for row in t.rows)
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        lines.append(r"\par\footnotesize " + r" \\ ".join(escape_latex(n) for n in t.notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
