"""The data model of a trace comparison: one aligned row per key occurrence
(:class:`CompareRow`), the outcome (:class:`CompareResult`), the row statuses and the default
tolerances. :mod:`nanobragg_cli.compare` fills it, :mod:`nanobragg_cli.compare_explain` explains
a divergence and :mod:`nanobragg_cli.compare_report` lays it out. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_RTOL = 1e-9
DEFAULT_ATOL = 1e-12

# status values of a row
OK = "ok"
MISMATCH = "mismatch"  # a number out of tolerance (or text differs)
LENGTH = "length"  # different count of numbers
MISSING_PY = "missing_py"  # occurrence only in the C trace
MISSING_C = "missing_c"  # occurrence only in the Python trace


@dataclass
class CompareRow:
    """One aligned record: ``key`` (its ``occurrence``-th appearance, 0-based) on both sides.

    ``c_values``/``py_values`` are ``None`` where the side lacks this occurrence. ``abs_delta``
    is the largest |C − Py| over the numbers both sides have, ``rel_delta`` that divided by the
    key's ``scale`` (``None`` where nothing numeric was compared). ``tolerance`` is
    ``atol + rtol*scale`` (0 for integer keys).
    """

    key: str
    occurrence: int
    c_values: list[float] | None
    py_values: list[float] | None
    abs_delta: float | None
    rel_delta: float | None
    ok: bool
    status: str
    scale: float = 0.0
    tolerance: float = 0.0
    integer: bool = False
    c_text: str | None = None  # value text of a non-numeric record
    py_text: str | None = None
    c_line: int | None = None  # 1-based line numbers in the logs
    py_line: int | None = None
    c_raw: str | None = None
    py_raw: str | None = None


@dataclass
class CompareResult:
    """Outcome of :func:`compare_traces`.

    ``first_divergence`` is the key of the first row (C order) that is not ok, else ``None``;
    ``first_divergence_index`` its position in ``rows``. ``explanation`` joins the texts of the
    quirk detectors that recognised the divergence (``quirks`` lists them by name). ``counts``:
    rows, ok, mismatch, length, missing_py, missing_c, failed.
    """

    rows: list[CompareRow]
    first_divergence: str | None
    first_divergence_index: int | None
    explanation: str | None
    counts: dict[str, int]
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    c_name: str = "<C>"
    py_name: str = "<PY>"
    quirks: list[dict[str, str]] = field(default_factory=list)

    @property
    def first_row(self) -> CompareRow | None:
        if self.first_divergence_index is None:
            return None
        return self.rows[self.first_divergence_index]
