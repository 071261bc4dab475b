"""``nanobragg bench`` reports: machine description, the JSON record (schema nanobragg-bench/1),
and the table as rich text or Markdown."""

from __future__ import annotations

from dataclasses import asdict
import hashlib
import os
from pathlib import Path
import platform
import subprocess
import sys

from .bench_model import OUTPUT_FLAGS, RECORDED_C, RECORDED_C_SOURCE, SCHEMA, RunnerResult


def _git_state(folder: Path) -> dict:
    def git(*a):
        out = subprocess.run(["git", "-C", str(folder), *a], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "package_modified": bool(dirty)} if commit else {}


def _meminfo_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError):
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str, c_bin: str | None) -> dict:
    import torch
    from . import __version__
    info = {
        "cpu": _cpu_model(), "machine": platform.machine(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gb": _meminfo_gb(), "os": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "nanobragg_cli": __version__, "package_path": str(Path(__file__).resolve().parent),
        **_git_state(Path(__file__).resolve().parent),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    if c_bin:
        data = Path(c_bin).read_bytes()
        info["c_bin"] = {"path": str(Path(c_bin).resolve()), "bytes": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()[:16]}
    return info


def recorded_c(bid: str, threads: int) -> dict | None:
    """The C figures recorded in benchmarks.md for ``bid`` at ``threads``, or None."""
    if bid not in RECORDED_C or threads not in RECORDED_C[bid][0]:
        return None
    (lo, hi), rss = RECORDED_C[bid][0][threads], RECORDED_C[bid][1]
    return {"source": RECORDED_C_SOURCE, "threads": threads, "wall_s": (lo + hi) / 2,
            "wall_s_range": [lo, hi], "peak_rss_mb": rss}


def _runner_json(res: RunnerResult, evaluations: int) -> dict:
    med = res.median_s
    return {
        "command": res.command, "ok": res.ok,
        "wall_s": [round(r.wall_s, 4) for r in res.runs],
        "peak_rss_mb": [round(r.peak_rss_mb, 1) for r in res.runs],
        "loadavg_1m": [None if r.loadavg_1m is None else round(r.loadavg_1m, 2)
                       for r in res.runs],
        "median_s": None if med is None else round(med, 4),
        "max_peak_rss_mb": None if res.peak_rss_mb is None else round(res.peak_rss_mb, 1),
        "evals_per_s": None if not med else evaluations / med,
        "errors": [r.error for r in res.runs if r.error],
    }


def build_report(settings: dict, machine: dict, entries: list) -> dict:
    """The JSON document (schema ``nanobragg-bench/1``). ``entries``: (bench, work, outcome)."""
    out = []
    for bench, work, outcome in entries:
        runs = {k: _runner_json(v, work.evaluations) for k, v in outcome["results"].items()}
        c_med = runs.get("c", {}).get("median_s")
        rec = None if "c" in runs else recorded_c(bench.id, settings["threads"])
        ref = c_med if c_med else (rec["wall_s"] if rec else None)
        ratios = {f"{k}/c": (v["median_s"] / ref if v["median_s"] and ref else None)
                  for k, v in runs.items() if k != "c"}
        out.append({
            "id": bench.id, "title": bench.title, "args": list(bench.args),
            "outputs": list(OUTPUT_FLAGS),
            "work": {**asdict(work), "shape_slow_fast": list(work.shape_slow_fast),
                     "evals_per_pixel": work.evals_per_pixel, "evaluations": work.evaluations},
            "runs": runs,
            "c_recorded": rec,
            "ratio_basis": "c (this run)" if c_med else ("c_recorded" if rec else None),
            "ratios": ratios,
            "max_rel_diff_vs_c": outcome.get("diff_vs_c", {}),
            "series": _series_json(outcome, runs, work) if "series" in outcome else None,
        })
    return {"schema": SCHEMA, "settings": settings, "machine": machine, "benchmarks": out}


def _series_json(outcome: dict, runs: dict, work) -> dict:
    """Per-frame figures of a series benchmark: ours from its own summary line (set-up and
    per-frame render time inside the one process), C's wall time divided by the frames."""
    out = {"frames": work.frames, "ours": outcome["series"]}
    c_med = runs.get("c", {}).get("median_s")
    out["c_per_frame_s"] = None if not c_med else c_med / work.frames
    for key, r in runs.items():
        if key != "c" and r["median_s"]:
            out.setdefault("ours_wall_per_frame_s", {})[key] = r["median_s"] / work.frames
    return out


def _fmt_s(x):
    return "—" if x is None else (f"{x:.3g}" if x < 10 else f"{x:.1f}")


def _fmt_rate(evals_per_s):
    return "—" if not evals_per_s else f"{evals_per_s / 1e6:.3g}"


def _fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def _fmt_diff(x):
    return "—" if x is None else f"{x:.1e}"


def table_rows(report: dict) -> list:
    """Rows (id, runner, median s, runs s, peak RSS MB, Meval/s, ours/C, Δ vs C) per runner."""
    rows = []
    labels = {"c": "nanoBragg.c"}
    for b in report["benchmarks"]:
        ev = b["work"]["evaluations"]
        for key, r in b["runs"].items():
            label = labels.get(key, "ours " + key.removeprefix("py-"))
            if key.endswith("proc"):   # a series shared by W processes of one thread
                dtype, procs = key.removeprefix("py-").rsplit("-", 1)
                label = f"ours {dtype}, {procs.removesuffix('proc')} processes × 1 thread"
            elif key != "c" and any(k.endswith("proc") for k in b["runs"]):
                label += f", 1 process × {report['settings']['threads']} threads"
            if key != "c" and report["settings"]["device"] != "cpu":
                label += f" ({report['settings']['device']})"
            if key != "c" and report["settings"].get("server"):
                label += " (warm server)"
            runs = ", ".join(_fmt_s(x) for x in r["wall_s"])
            if not r["ok"]:
                runs = f"FAILED: {'; '.join(r['errors'])}"
            rows.append((b["id"], label, _fmt_s(r["median_s"]), runs,
                         _fmt_s(r["max_peak_rss_mb"]), _fmt_rate(r["evals_per_s"]),
                         "" if key == "c" else _fmt_ratio(b["ratios"].get(f"{key}/c")),
                         "" if key == "c" else _fmt_diff(b["max_rel_diff_vs_c"].get(key))))
        rec = b["c_recorded"]
        if rec:
            lo, hi = rec["wall_s_range"]
            rows.append((b["id"], "nanoBragg.c †", _fmt_s(rec["wall_s"]),
                         f"{lo:g}–{hi:g}" if lo != hi else f"{lo:g}",
                         _fmt_s(rec["peak_rss_mb"]), _fmt_rate(ev / rec["wall_s"]), "", ""))
    return rows


HEADERS = ("id", "program", "median wall s", "runs s", "peak RSS MB", "M sub-pixel evals/s",
           "ours/C", "max|Δ|/max vs C")


def _footnotes(report: dict) -> list:
    s = report["settings"]
    notes = [f"threads {s['threads']} (OMP_NUM_THREADS for C, --threads for ours), "
             f"{s['repeats']} run(s) each, wall time = process start to exit with the images "
             f"written, peak RSS = the program's own ru_maxrss ({s['rss_method']})."]
    if any("c" in b["runs"] for b in report["benchmarks"]) and "--c-parity" not in s["extra"]:
        notes.append("max|Δ|/max compares the float images of the last runs; our default mode "
                     "departs from C where C has a quirk (the φ=0 carryover of B2/B4, sincg next "
                     "to integer h in B3: docs/differences.md); --extra --c-parity compares like "
                     "for like.")
    loads = [x for b in report["benchmarks"] for r in b["runs"].values()
             for x in r.get("loadavg_1m", []) if x is not None]
    cpus = report["machine"].get("cpus_usable")
    if loads:
        notes.append(f"1-minute load average before the runs: {min(loads):.1f}–{max(loads):.1f}"
                     + (f" on {cpus} usable CPUs" if cpus else "")
                     + " (a load above the CPU count means other processes competed).")
    if s.get("server"):
        notes.append("ours ran through the warm-start server (NANOBRAGG_SERVER=1, started before "
                     "timing): its peak RSS is the client's only, the rendering child of the "
                     "server is not measured.")
    if any(b["c_recorded"] for b in report["benchmarks"]):
        notes.append(f"† nanoBragg.c figures {RECORDED_C_SOURCE}; ratios against them are "
                     "rough (different load, possibly a different machine).")
    elif not any("c" in b["runs"] for b in report["benchmarks"]):
        notes.append("no C figures: set NB_C_BIN to a nanoBragg.c binary to time it side by side.")
    return notes


def work_lines(report: dict) -> list:
    out = []
    for b in report["benchmarks"]:
        w = b["work"]
        out.append(f"{b['id']}: {b['title']}: {w['pixels']} pixels × {w['oversample']}² "
                   f"sub-pixels × {w['sources']} source(s) × {w['mosaic_domains']} mosaic × "
                   f"{w['phi_steps']} φ" + (f" × {w['thick_steps']} layers"
                                            if w["thick_steps"] > 1 else "")
                   + (f" × {w['frames']} frames" if w.get("frames", 1) > 1 else "")
                   + f" = {w['evaluations'] / 1e6:.3g} M evaluations")
        series = b.get("series")
        if series:
            parts = []
            for key, note in (series.get("ours") or {}).items():
                if note:
                    procs = key.rsplit("-", 1)[-1] if key.endswith("proc") else ""
                    how = (f"{procs.removesuffix('proc')} processes x 1 thread, rank 0:"
                           if procs else "one process,")
                    own = " of its share" if procs else ""
                    parts.append(f"ours {key.removeprefix('py-')}: {how} set-up "
                                 f"{note['setup_s']:.2f} s, {note['per_frame_s']:.3g} s per "
                                 f"frame{own} "
                                 f"({note['in_process_s']:.3g} s in process)")
            if series.get("c_per_frame_s"):
                parts.append(f"nanoBragg.c loop: {series['c_per_frame_s']:.3g} s per frame "
                             "(one process per frame)")
            if parts:
                out.append(f"{b['id']} per frame: " + "; ".join(parts))
    return out


def to_markdown(report: dict) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    lines.append("")
    lines += [f"- {x}" for x in work_lines(report)]
    lines += [f"- {x}" for x in _footnotes(report)]
    return "\n".join(lines) + "\n"


def print_table(report: dict, file=None) -> None:
    from rich.console import Console
    from rich.table import Table
    out = file or sys.stdout
    width = None if out.isatty() else 160
    console = Console(file=out, highlight=False, width=width, soft_wrap=False)
    table = Table(*HEADERS, title="nanobragg bench")
    last = None
    for row in table_rows(report):
        if last is not None and row[0] != last:
            table.add_section()
        last = row[0]
        table.add_row(*row)
    console.print(table)
    for line in work_lines(report) + _footnotes(report):
        console.print(line)


# -----------------------------------------------------------------------------------------------
# command
