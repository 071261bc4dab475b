"""A golden corpus of nanoBragg.c outputs (laid out like tests/golden) and how to check us
against it: load cases, run one in-process, compare images and traces.

Used by the test-suite and by ``nanobragg suite``. A case is run in a fresh temporary working
folder holding a link ``inputs -> <corpus>/inputs``, as the corpus was made, so that relative
input paths resolve and no Fdump.bin cache leaks between cases.
"""

from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
import io
import json
import os
from pathlib import Path
import shutil
import tempfile

import numpy as np

GOLDEN_ENV = "NB_GOLDEN_DIR"
IMAGE_RTOL = 1e-5
IMAGE_ATOL_FRACTION = 1e-7   # atol = this x the reference image max
TRACE_RTOL = 1e-9
TRACE_ATOL = 1e-12


def default_golden_dir() -> Path:
    """$NB_GOLDEN_DIR if set (and not empty), else the corpus in the repository, tests/golden."""
    env = os.environ.get(GOLDEN_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "tests" / "golden"


@dataclass
class Case:
    """One golden case: its folder, argv, outputs and reference files."""
    name: str
    dir: Path
    meta: dict

    @property
    def args(self) -> list:
        return list(self.meta["args"])

    @property
    def default_mode_args(self) -> list | None:
        return self.meta.get("default_mode_args")

    @property
    def shape(self) -> tuple:
        return tuple(self.meta["shape_slow_fast"])

    @property
    def trace_pixels(self) -> list:
        return [tuple(p) for p in self.meta.get("trace_pixels_slow_fast", [])]

    def trace_log(self, pixel) -> Path:
        return self.dir / f"trace_{pixel[0]}_{pixel[1]}.log"

    def file(self, name) -> Path | None:
        p = self.dir / name
        return p if p.exists() else None

    @property
    def has_image(self) -> bool:
        return (self.dir / "float.bin").exists()

    def reference_image(self) -> np.ndarray:
        return np.fromfile(self.dir / "float.bin", dtype="<f4").reshape(self.shape)


def load_cases(golden: Path, names: list | None = None) -> list:
    """Cases of a corpus, sorted by name (only ``names`` if given; unknown names are an error)."""
    root = Path(golden) / "cases"
    found = {p.name: p for p in root.iterdir() if (p / "meta.json").exists()} if root.is_dir() else {}
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise KeyError(", ".join(missing))
        keys = list(names)
    else:
        keys = sorted(found)
    return [Case(k, found[k], json.loads((found[k] / "meta.json").read_text())) for k in keys]


@contextmanager
def case_workdir(golden: Path):
    """A temporary working folder with ``inputs`` pointing at the corpus' inputs."""
    tmp = tempfile.mkdtemp(prefix="nb_case_")
    old = os.getcwd()
    try:
        src = Path(golden) / "inputs"
        if src.exists():
            try:
                os.symlink(src.resolve(), os.path.join(tmp, "inputs"))
            except OSError:
                shutil.copytree(src, os.path.join(tmp, "inputs"))
        os.chdir(tmp)
        yield Path(tmp)
    finally:
        os.chdir(old)
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class CaseRun:
    """What our run produced: float32 image, output files by flag, trace lines per pixel
    (TRACE_PY text), the report printed, and the simulation result."""
    image: np.ndarray
    files: dict
    traces: dict
    report: str
    result: object = None


def run_case(case: Case, golden: Path, *, c_parity: bool = True, default_mode: bool = False,
             dtype: str = "float64", device: str = "cpu", trace: bool = True,
             extra_args: list = (), window: tuple | None = None) -> CaseRun:
    """Run a case in-process (the CLI's code path). ``default_mode`` uses the case's
    default_mode_args (for the *_spec references) without --c-parity. ``window``: compute only
    that block of the image (slow_min, slow_max, fast_min, fast_max)."""
    from .simulate import (ToolOptions, image_outputs, output_files, prepare, report_lines,
                           run_simulation)
    from .trace import format_lines

    argv = case.default_mode_args if default_mode else case.args
    argv = list(argv) + list(case.meta.get("outputs", [])) + list(extra_args)
    # the outputs of the supervisor cases include their own -trace_pixel; we trace separately
    if "-trace_pixel" in argv:
        k = argv.index("-trace_pixel")
        del argv[k:k + 3]
    tool = ToolOptions(c_parity=c_parity and not default_mode, dtype=dtype, device=device)
    with case_workdir(golden):
        cfg = prepare(argv)
        buf = io.StringIO()
        with redirect_stdout(buf):
            res = run_simulation(cfg, tool, extra_trace_pixels=case.trace_pixels if trace else [],
                                 window=window)
        key = {"-floatfile": "float", "-intfile": "int", "-pgmfile": "pgm", "-noisefile": "noise"}
        files = {key[flag]: data for (flag, _), (_, data)
                 in zip(image_outputs(cfg), output_files(res))}
    traces = {px: "\n".join(format_lines(lines)) + "\n" for px, (lines, _) in res.traces.items()}
    return CaseRun(image=res.image, files=files, traces=traces,
                   report="\n".join(report_lines(res)), result=res)


@dataclass
class ImageMetrics:
    """ok: every pixel within atol + rtol·|ref|; worst: max |Δ|/tolerance; n_bad: pixels over
    tolerance; max_rel: max |Δ|/max|ref|; corr: Pearson correlation; sum_ratio: Σours/Σref."""
    ok: bool
    worst: float
    n_bad: int
    max_rel: float
    corr: float
    sum_ratio: float
    extra: dict = field(default_factory=dict)


def compare_images(ours: np.ndarray, ref: np.ndarray, rtol: float = IMAGE_RTOL,
                   atol_fraction: float = IMAGE_ATOL_FRACTION, mask=None) -> ImageMetrics:
    """Compare two images at rtol with atol = atol_fraction x max|ref| (optionally on a mask)."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        return ImageMetrics(False, float("inf"), a.size, float("inf"), float("nan"), float("nan"),
                            {"shape": [a.shape, b.shape]})
    peak = float(np.abs(b).max()) if b.size else 0.0
    tol = rtol * np.abs(b) + atol_fraction * peak
    diff = np.abs(a - b)
    sel = np.ones_like(b, dtype=bool) if mask is None else mask
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tol > 0, diff / tol, np.where(diff > 0, np.inf, 0.0))
    bad = (diff > tol) & sel
    worst = float(ratio[sel].max()) if sel.any() else 0.0
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.size > 1 and a.std() > 0 and b.std() > 0 else 1.0
    sb = float(b.sum())
    return ImageMetrics(ok=not bad.any(), worst=worst, n_bad=int(bad.sum()),
                        max_rel=float(diff.max() / peak) if peak > 0 else float(diff.max()),
                        corr=corr, sum_ratio=float(a.sum()) / sb if sb != 0 else float("nan"))


def image_metrics(ours, ref, origin: tuple | None, region: tuple, rtol: float,
                  atol_fraction: float) -> dict:
    """Metrics of our image against the reference on ``region`` (see golden.compare_images)."""
    s0, s1, f0, f1 = region
    o_s, o_f = origin or (0, 0)
    a = np.asarray(ours, dtype=np.float64)[s0:s1 + 1, f0:f1 + 1]
    b = ref[s0 - o_s:s1 - o_s + 1, f0 - o_f:f1 - o_f + 1]
    m = compare_images(a, b, rtol=rtol, atol_fraction=atol_fraction)
    peak = float(np.abs(b).max()) if b.size else 0.0
    return {"region_slow_fast": [s0, s1, f0, f1], "pixels": int(b.size),
            "correlation": m.corr, "sum_ratio": m.sum_ratio, "max_abs_delta_over_max": m.max_rel,
            "pixels_over_tolerance": m.n_bad, "worst_delta_over_tolerance": m.worst,
            "rtol": rtol, "atol": atol_fraction * peak, "atol_fraction_of_max": atol_fraction,
            "c_max": peak, "c_sum": float(b.sum()), "py_sum": float(a.sum()), "ok": m.ok}


def compare_case_trace(case: Case, pixel: tuple, py_text: str, rtol: float = TRACE_RTOL,
                       atol: float = TRACE_ATOL):
    """compare.CompareResult of the case's C trace of ``pixel`` against our TRACE_PY text."""
    from .compare import compare_traces
    return compare_traces(case.trace_log(pixel), py_text, rtol=rtol, atol=atol)
