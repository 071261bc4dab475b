"""The files of a parity bundle besides the comparison itself: environment, commit, checksums,
text renderings of a comparison, and the human summary (see :mod:`nanobragg_cli.parity`)."""

from __future__ import annotations

from datetime import datetime, timezone
import io
import json
import os
from pathlib import Path
import subprocess

from .compare import CompareResult
from .compare_report import render_table, summary_line
from .records import json_safe, sha256_file


def environment(tool) -> dict:
    """env.json: versions, device, dtype, mode, threads and platform of the run."""
    import platform
    import numpy as np
    import torch
    from . import __version__
    env = {"nanobragg_cli": __version__, "python": platform.python_version(),
           "torch": torch.__version__, "numpy": np.__version__, "device": tool.device,
           "dtype": tool.dtype, "mode": "c-parity" if tool.c_parity else "default",
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
           "platform": platform.platform(), "machine": platform.machine()}
    if tool.device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(tool.device))
    return env


def git_sha() -> str:
    """The commit of this code (with a note if tracked files are modified), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        if sha.returncode:
            return "unknown (not a git checkout)\n"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)\n"
    return sha.stdout.strip() + ("\nuncommitted changes to tracked files\n" if dirty else "\n")


def json_text(obj) -> str:
    return json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n"


def compare_text(result: CompareResult) -> str:
    """The comparison as plain text: the full table, summary, explanation, first_divergence."""
    from rich.console import Console
    buf = io.StringIO()
    render_table(result, Console(file=buf, width=240, highlight=False, color_system=None,
                                 force_terminal=False), show_all=True)
    return buf.getvalue() + f"first_divergence={result.first_divergence}\n"


def timestamp_dir(out: Path) -> Path:
    """out/<UTC time, ISO 8601 basic format>, with -1, -2 ... if that folder exists."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, k = out / stamp, 1
    while path.exists():
        path, k = out / f"{stamp}-{k}", k + 1
    return path


def stage_folder(out, error) -> tuple:
    """(final, stage): the timestamped bundle folder under ``out`` and the hidden staging folder,
    created, its contents renamed to ``final`` once complete. ``error``: the exception class
    raised (one line naming ``--out``) when the folder cannot be created."""
    out = Path(out)
    final = timestamp_dir(out)
    stage = out / f".{final.name}.partial"
    try:
        stage.mkdir(parents=True)
    except OSError as err:
        raise error(f"--out {out}: cannot create the bundle folder "
                    f"({err.strerror or err})") from None
    return final, stage


def write_checksums(folder: Path, inputs: list) -> None:
    """sha256.txt in ``folder``: its files by name, then the input files by absolute path, in
    ``sha256sum -c`` format."""
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(folder.iterdir()) if p.is_file()]
    lines += [f"{sha256_file(p)}  {p.resolve()}" for p in inputs if p.is_file()]
    (folder / "sha256.txt").write_text("\n".join(lines) + "\n")


def _fmt(x) -> str:
    return "%.9g" % x if isinstance(x, float) else str(x)


def summary_markdown(bundle: Path, res, tool, pixel, window, checks, metrics, exit_code,
                     invocation, plain) -> str:
    """summary.md: what a reader needs first (verdict, divergence, metrics, how to rerun)."""
    first = checks[0].result
    verdict = {0: "PASS", 1: "FAIL"}[exit_code]
    L = [f"# Parity bundle {bundle.name}: {verdict}", "",
         f"- mode: **{'c-parity' if tool.c_parity else 'default'}** (dtype {tool.dtype}, device "
         f"{tool.device})",
         f"- traced pixel (slow, fast): {pixel[0]}, {pixel[1]}",
         "- rendered: " + (f"window slow {window[0]}..{window[1]}, fast {window[2]}..{window[3]}"
                            if window else f"whole detector ({res.cfg.detector.spixels}x"
                                           f"{res.cfg.detector.fpixels})")
         + f" in {res.seconds:.1f} s",
         f"- first divergence vs `{checks[0].path}`: **{first.first_divergence}**"]
    L += [f"- warning: {w}" for w in res.cfg.warnings] + [""]
    L += ["## Traces", "", "| C trace | first divergence | records | file |", "|---|---|---|---|"]
    for ch in checks:
        L.append(f"| `{ch.path}` | `{ch.result.first_divergence}` | "
                 f"{summary_line(ch.result)} | {ch.stem}.md |")
    for ch in checks:
        if ch.result.first_row is not None:
            r = ch.result.first_row
            L += ["", f"### {ch.label}: first divergence `{r.key}` (occurrence {r.occurrence})", "",
                  f"- C: `{' '.join('%.15g' % v for v in r.c_values or [])}`",
                  f"- Py: `{' '.join('%.15g' % v for v in r.py_values or [])}`"]
            if ch.result.explanation:
                L += [""] + [f"> {t}" for t in ch.result.explanation.splitlines()]
    if metrics is not None:
        s0, s1, f0, f1 = metrics["region_slow_fast"]
        L += ["", "## Image", "",
              f"`{metrics['c_image']}` against our image on slow {s0}..{s1}, fast {f0}..{f1} "
              f"({metrics['pixels']} pixels); tolerance {metrics['rtol']:g}·|C| + "
              f"{metrics['atol_fraction_of_max']:g}·max|C|.", "",
              "| metric | value |", "|---|---|"]
        for key in ("correlation", "sum_ratio", "max_abs_delta_over_max", "pixels_over_tolerance",
                    "worst_delta_over_tolerance", "c_max", "c_sum", "py_sum", "ok"):
            L.append(f"| {key} | {_fmt(metrics[key])} |")
    L += ["", "## Reproduce", "", "From the working folder in commands.txt:", "", "```sh",
          invocation or "# (run_parity called from Python)", "```", "",
          "Our run alone, as a plain command:", "", "```sh", plain, "```", "",
          "`sha256sum -c sha256.txt` (inside this folder) checks the files and inputs.", ""]
    return "\n".join(L)
