"""Peak memory of a large render where a pixel is one evaluation (docs/performance.md, "Peak
memory"): torch's own footprint, the kernel's chunk budget (--max-memory) and about 24 bytes per
pixel (the float64 image, its float32 copy, the SMV buffer) -- no per-pixel index lists or
image-sized float64 temporaries on top.

Each figure is the peak RSS of a fresh process (Linux ``ru_maxrss``), so runs of other tests do
not count.
"""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="ru_maxrss in KiB is Linux's")

PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
N = 4096
BUDGET = 64 * 2 ** 20


def _peak_rss(code: str, cwd) -> int:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_one_evaluation_per_pixel_render_stays_within_its_memory_model(tmp_path):
    torch_alone = _peak_rss(f"import torch; {PEAK}", tmp_path)
    argv = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 "
            f"-detpixels {N} -pixel 0.05 -oversample 1 -floatfile f.bin -intfile i.img -nopgm "
            f"-nonoise -noprogress --max-memory {BUDGET}").split()
    run = _peak_rss("import contextlib, io\nfrom nanobragg_cli.cli import main\n"
                    "with contextlib.redirect_stdout(io.StringIO()):\n"
                    f"    rc = main({argv!r})\nassert rc == 0\n{PEAK}", tmp_path)
    assert (tmp_path / "f.bin").stat().st_size == 4 * N * N
    # measured: torch alone ~275 MB, this run ~640 MB; before the per-pixel lists went ~1.1 GB
    bound = torch_alone + BUDGET + 24 * N * N + 96 * 2 ** 20
    assert run < bound, (f"peak RSS {run / 2**20:.0f} MiB, model bound {bound / 2**20:.0f} MiB "
                         f"(torch alone {torch_alone / 2**20:.0f} MiB)")
