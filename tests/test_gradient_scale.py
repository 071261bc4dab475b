"""Gradients at detector scale (render_grad): a gradient render's peak memory follows the chunk
budget, not the detector size; the chunk-by-chunk gradients (recomputed in the backward pass, or
accumulated with a loss) equal those of plain autograd over the whole image in one graph."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from nanobragg_cli import Simulator
from nanobragg_cli import render_grad
from nanobragg_cli.kernel import render_chunk
from nanobragg_cli.chunks import as_tensor, plan_chunks, rendered_pixels

REPO = Path(__file__).resolve().parent.parent
BASE = ("-cell 50 60 70 80 85 95 -misset 10 20 30 -N 3 -default_F 100 -lambda 1 -distance 50 "
        "-oversample 2 -phisteps 2 -osc 0.3")
NAMES = ["distance", "beam_center", "cell", "misset"]

PEAK = r"""
import json, resource, sys, torch
from nanobragg_cli import Simulator
n = int(sys.argv[1])
sim = Simulator.from_flags("-cell 50 60 70 80 85 95 -misset 10 20 30 -N 3 -default_F 100 "
                           "-lambda 1 -distance 50 -oversample 1 -phisteps 2 -osc 0.2 "
                           f"-detpixels {n} -pixel {25.0 / n}", max_memory=16 * 2 ** 20)
x = sim.parameters(["distance", "cell"], units="flag")
image = sim.render(x, units="flag")
image.sum().backward()
assert torch.isfinite(x["cell"].grad).all()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def _peak_kib(n: int) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, str(n)], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_gradient_render_memory_follows_the_budget_not_the_detector():
    """256² and 512² pixels at the same 16 MiB budget: with every chunk's graph kept until the
    backward pass, the larger render would hold ~0.8 GB more (2 evaluations per pixel at ~1.6 kB);
    recomputed chunk by chunk, the peaks (RSS of a fresh process, torch included) are alike."""
    small, large = _peak_kib(256), _peak_kib(512)
    assert large < 1.2 * small, f"peak RSS {large} KiB for 4x the pixels vs {small} KiB"


def _reference(sim, x):
    """Plain autograd over the whole image: every pixel in one kernel call, one graph."""
    scene = sim.scene(x, units="flag")
    plan = plan_chunks(scene, 2 ** 40)                       # one chunk
    pix = rendered_pixels(scene)
    assert plan.starts == [0] and torch.equal(as_tensor(plan.pix), pix)
    out = render_chunk(scene, pix, torch.zeros((), dtype=torch.bool), plan.first_local(0))
    flat = torch.zeros(scene.spixels * scene.fpixels, dtype=scene.dtype)
    return flat.index_put((pix,), out.values).reshape(sim.shape)


def _close(a, b, rtol=1e-12):
    return float((a - b).abs().max()) <= rtol * float(b.abs().max())


def _chunked_equals_plain(flags: str, names=NAMES):
    sim = Simulator.from_flags(flags, max_memory=2 ** 19)     # many chunks of ~50 pixels
    x = sim.parameters(names, units="flag")
    gen = torch.Generator().manual_seed(1)
    weights = torch.rand(sim.shape, generator=gen, dtype=torch.float64)
    image = sim.render(x, units="flag")
    ref = _reference(sim, x)
    with torch.no_grad():
        plain = sim.render(x, units="flag")
    # the forward pass is the plain render (the kernel's no-grad path); the one-graph reference
    # takes the differentiable lattice-factor form, equal to rounding
    assert torch.equal(image.detach(), plain)
    assert _close(image.detach(), ref.detach())
    got = torch.autograd.grad((image * weights).sum(), list(x.values()))
    want = torch.autograd.grad((ref * weights).sum(), list(x.values()))
    for name, g, w in zip(names, got, want):
        assert bool((w != 0).all()), name
        assert _close(g, w), f"{name}: {g} vs {w}"


def test_chunked_gradients_equal_one_graph_default_mode():
    _chunked_equals_plain(BASE + " -detpixels 24 -pixel 1")


def test_chunked_gradients_equal_one_graph_c_parity_carryover():
    """--c-parity with -phi 0: the φ=0 carryover's first sub-iteration lies in the first chunk."""
    _chunked_equals_plain(BASE + " -phi 0 -detpixels 24 -pixel 1 --c-parity")


def test_render_loss_equals_the_loss_of_the_image_and_its_gradient():
    sim = Simulator.from_flags(BASE + " -detpixels 24 -pixel 1", max_memory=2 ** 19)
    x = sim.parameters(NAMES, units="flag")
    ref = _reference(sim, x)
    gen = torch.Generator().manual_seed(2)
    target = ref.detach() * (1 + 0.1 * torch.rand(sim.shape, generator=gen, dtype=torch.float64))
    weights = torch.rand(sim.shape, generator=gen, dtype=torch.float64)
    weights[:, :5] = 0.0                                      # not rendered at all
    want = 0.5 * (weights * (ref - target) ** 2).sum()
    want_g = torch.autograd.grad(want, list(x.values()), retain_graph=True)
    loss = sim.render_loss(x, units="flag", target=target, weights=weights)
    assert loss.dim() == 0 and _close(loss.detach(), want.detach())
    loss.backward()
    for name, w in zip(NAMES, want_g):
        assert _close(x[name].grad, w), name

    # a callable: Poisson negative log-likelihood of counts, summed chunk by chunk
    counts = torch.round(target)
    nll = (ref - counts * torch.log(ref)).sum()
    nll_g = torch.autograd.grad(nll, list(x.values()))
    x2 = sim.parameters(NAMES, units="flag")

    def poisson(values, pixels):
        c = counts[pixels[:, 0], pixels[:, 1]]
        return (values - c * torch.log(values)).sum()

    got = sim.render_loss(x2, units="flag", loss=poisson)
    assert _close(got.detach(), nll.detach())
    got.backward()
    for name, w in zip(NAMES, nll_g):
        assert _close(x2[name].grad, w), name


def test_chunks_without_gradient_are_not_rendered_again(monkeypatch):
    """The backward pass recomputes only chunks whose pixels receive a gradient."""
    sim = Simulator.from_flags(BASE + " -detpixels 24 -pixel 1", max_memory=2 ** 19)
    x = sim.parameters(["distance"], units="flag")
    image = sim.render(x, units="flag")
    calls = []
    real = render_grad.render_chunk
    monkeypatch.setattr(render_grad, "render_chunk",
                        lambda scene, pix, *a, **k: calls.append(pix) or real(scene, pix, *a, **k))
    image[20:, :].sum().backward()
    rows = torch.cat(calls) // 24
    assert len(calls) >= 1 and int(rows.max()) == 23 and int(rows.min()) >= 15
    assert torch.isfinite(x["distance"].grad) and float(x["distance"].grad) != 0.0


def test_render_loss_refuses_a_wrong_target_in_one_line():
    sim = Simulator.from_flags(BASE + " -detpixels 8 -pixel 1")
    for kw in (dict(), dict(target=np.zeros((3, 3)))):
        try:
            sim.render_loss(**kw)
        except Exception as err:  # NanoBraggError
            assert "\n" not in str(err) and ("target" in str(err))
        else:
            raise AssertionError(f"accepted {kw}")


def test_api_doc_render_loss_example_runs(tmp_path, monkeypatch):
    """docs/api.md's render_loss block runs as written, and its claim holds."""
    import re
    text = (REPO / "docs" / "api.md").read_text()
    block = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "render_loss" in b]
    assert len(block) == 1
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(block[0], "docs/api.md", "exec"), scope)
    assert float(scope["x"]["distance"].grad) > 0 and bool(torch.isfinite(scope["nll"].detach()))
