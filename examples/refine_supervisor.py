"""Refine detector distance, beam centre, misset and cell on the supervisor command's geometry
(a Pilatus-6M-sized 2463x2527 detector) from spot shoeboxes, without holding the image.

The supervisor command of the golden corpus (``make supervisor``: its A matrix
``tests/golden/inputs/A.mat``, structure factors ``tests/golden/inputs/scaled.hkl``, a
custom detector frame at 231 mm) is simulated noise-free as the data, with **2 φ steps instead of
10** over the same 0.1° oscillation (5x fewer evaluations; the geometry is the command's). The
brightest spots are found in that image and a square shoebox is cut around each; only those
pixels are ever rendered again. Then the detector distance (mm), the beam centre (mm; for this
detector, given by -pix0_vector_mm, the SAMPLE pivot's near point (Fclose, Sclose), see
docs/api.md), the misset angles (deg) and the three cell lengths (Å; the A matrix's rows
rescaled, its angles kept) are perturbed (0.5 mm, 0.5 mm, 0.2°, ~0.3 %) and recovered by
minimising ½·Σ(model − data)² over the shoeboxes with ``Simulator.render_loss``, which
accumulates the loss and its gradient chunk by chunk.

The optimiser works in coordinates whitened by the Gauss-Newton metric JᵀJ at the start (as in
examples/refine_geometry.py: a longer cell and a shorter distance move the spots almost alike),
then runs L-BFGS. The true values are used only to report the errors.

Run it:  .venv/bin/python examples/refine_supervisor.py     (a few minutes on 2 cores)
"""

from dataclasses import dataclass, field
import os
from pathlib import Path
import sys
import tempfile
import time

import torch

from nanobragg_cli import Simulator

INPUTS = Path(__file__).resolve().parent.parent / "tests" / "golden" / "inputs"
# The Makefile's SUPERVISOR_ARGS, except -phisteps 10 -> 2.
FLAGS = (
    f"-mat {INPUTS / 'A.mat'} -hkl {INPUTS / 'scaled.hkl'} -nonoise -nointerpolate "
    "-oversample 1 -exposure 1 -flux 1e18 -beamsize 1.0 -spindle_axis -1 0 0 "
    "-Xbeam 217.742295 -Ybeam 213.907080 -distance 231.274660 -lambda 0.976800 -pixel 0.172 "
    "-detpixels_x 2463 -detpixels_y 2527 -odet_vector -0.000088 0.004914 -0.999988 "
    "-sdet_vector -0.005998 -0.999970 -0.004913 -fdet_vector 0.999982 -0.005998 -0.000118 "
    "-pix0_vector_mm -216.336293 215.205512 -230.200866 "
    "-beam_vector 0.00051387949 0.0 -0.99999986 -Na 36 -Nb 47 -Nc 29 -osc 0.1 -phi 0 "
    "-phisteps 2 -detector_rotx 0 -detector_roty 0 -detector_rotz 0 -twotheta 0")
NAMES = ("distance", "beam_center", "misset", "cell")
UNIT_LABELS = {"distance": "mm", "beam_center": "mm", "misset": "deg", "cell": "Å"}
PERTURBATION = {"distance": 0.5, "beam_center": (0.5, -0.5), "misset": (0.2, -0.2, 0.2),
                "cell": (0.25, -0.2, 0.3)}
TOLERANCE = {"distance": 1e-3, "beam_center": 1e-3, "misset": 1e-3, "cell": 1e-3}


@dataclass
class RefinementResult:
    """Values in flag units by parameter name; ``history``: loss after each L-BFGS step;
    ``evaluations``: loss+gradient evaluations; ``pixels``: shoebox pixels; ``seconds``."""
    truth: dict
    start: dict
    recovered: dict
    history: list = field(default_factory=list)
    evaluations: int = 0
    pixels: int = 0
    spots: int = 0
    seconds: float = 0.0

    def errors(self) -> dict:
        """max |recovered − truth| per parameter, in flag units."""
        return {n: float((self.recovered[n] - self.truth[n]).abs().max()) for n in self.truth}

    def recovered_within(self, tolerance: dict = TOLERANCE) -> bool:
        return all(self.errors()[n] < tolerance[n] for n in self.truth)


def cell_lengths(amat: torch.Tensor) -> torch.Tensor:
    """(3,) real-space lengths a, b, c (Å) of the reciprocal rows ``amat`` (Å⁻¹)."""
    return torch.linalg.inv(amat).T.norm(dim=1)


def model_values(x: dict, amat0: torch.Tensor, cell0: torch.Tensor, extra: dict) -> dict:
    """The Simulator's parameters (flag units) for the refined ones: the cell lengths rescale
    the A matrix's rows (row i of the reciprocal matrix / s_i scales real vector i by s_i);
    ``extra``: fixed parameters of the stage (N, fluence)."""
    return {"distance": x["distance"], "beam_center": x["beam_center"], "misset": x["misset"],
            "amat": amat0 / (x["cell"] / cell0)[:, None], **extra}


def shoeboxes(image: torch.Tensor, n_spots: int, half: int, window=None) -> torch.Tensor:
    """(slow, fast) bool mask of (2·half+1)² boxes around the ``n_spots`` brightest local
    maxima of ``image`` (inside ``window`` = (slow_min, slow_max, fast_min, fast_max))."""
    img = image.detach()
    if window is not None:
        keep = torch.zeros_like(img, dtype=torch.bool)
        keep[window[0]:window[1] + 1, window[2]:window[3] + 1] = True
        img = torch.where(keep, img, torch.zeros_like(img))
    k = 2 * half + 1
    peak_max = torch.nn.functional.max_pool2d(img[None, None], k, 1, half)[0, 0]
    peaks = ((img == peak_max) & (img > 0)).nonzero()
    order = img[peaks[:, 0], peaks[:, 1]].argsort(descending=True)[:n_spots]
    mask = torch.zeros_like(img, dtype=torch.bool)
    for s, f in peaks[order].tolist():
        mask[max(s - half, 0):s + half + 1, max(f - half, 0):f + half + 1] = True
    return mask


def whitening(sim, x0, unflatten, amat0, cell0, extra, pixels, norm) -> torch.Tensor:
    """M such that x = x0 + M·z makes the Gauss-Newton metric JᵀJ/norm the identity in z; J:
    the Jacobian of the shoebox pixels, from a double backward (g(u) = Jᵀu is linear in u)."""
    x = x0.clone().requires_grad_(True)
    values = sim.render(model_values(unflatten(x), amat0, cell0, extra), units="flag",
                        pixels=pixels)
    u = torch.zeros_like(values, requires_grad=True)
    (g,) = torch.autograd.grad(values, x, grad_outputs=u, create_graph=True)
    J = torch.stack([torch.autograd.grad(g[i], u, retain_graph=True)[0]
                     for i in range(x.numel())], dim=1)
    JTJ = J.T @ J / norm
    d = JTJ.diagonal().sqrt()
    L = torch.linalg.cholesky(JTJ / d[:, None] / d[None, :])
    eye = torch.eye(x.numel(), dtype=x.dtype)
    return torch.linalg.solve_triangular(L.T, eye, upper=True) / d[:, None]


def refine(flags: str = FLAGS, perturbation: dict = PERTURBATION, *, n_spots: int = 150,
           half: int = 6, window=None, stages=(0.2, 0.5, 1.0), max_steps: int = 8,
           threads: int | None = None,
           verbose: bool = True) -> RefinementResult:
    """Simulate the data from ``flags``, cut shoeboxes around the ``n_spots`` brightest spots
    (inside ``window``, whose pixels alone are rendered for the data when given), start from
    truth + ``perturbation`` (flag units) and refine until the loss stops falling."""
    t0 = time.perf_counter()
    say = print if verbose else (lambda *a, **k: None)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    here = os.getcwd()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)                        # -hkl writes its Fdump.bin cache here
            sim = Simulator.from_flags(flags)
            amat0 = sim.get("amat", units="flag").clone()
            cell0 = cell_lengths(amat0)
            truth = {"distance": sim.get("distance", units="flag").clone(),
                     "beam_center": sim.get("beam_center", units="flag").clone(),
                     "misset": sim.get("misset", units="flag").clone(), "cell": cell0.clone()}
            with torch.no_grad():
                data = sim.render(window=window)
            boxes = shoeboxes(data, n_spots, half, window)
            pixels = boxes.nonzero()
            weights = boxes.to(data.dtype)
            norm = float((data[boxes] ** 2).sum())
            say(f"{sim}: data rendered in {time.perf_counter() - t0:.1f} s; "
                f"{min(n_spots, int(boxes.sum()))} spots, {pixels.shape[0]} shoebox pixels")
            start = {n: truth[n] + torch.as_tensor(perturbation[n], dtype=sim.dtype)
                     for n in NAMES}

            sizes = [truth[n].numel() for n in NAMES]
            shapes = [truth[n].shape for n in NAMES]

            def unflatten(v):
                return {n: p.reshape(s) for n, p, s in zip(NAMES, v.split(sizes), shapes)}

            x0 = torch.cat([start[n].reshape(-1) for n in NAMES])
            N0, fluence0 = sim.get("N"), sim.get("fluence")
            state = {"evals": 0, "loss": None}
            history = []
            for size in stages:
                # coarse to fine: a crystal of ~size·N cells has spots 1/size times wider (a
                # fluence scaled by the cell-count ratio keeps their integrated intensity), so
                # the perturbed model's spots overlap the data's; the last stage is the truth
                N = torch.round(N0 * size).clamp_min(1.0)
                extra = {"N": N, "fluence": fluence0 * (N0 / N).prod()}
                x0 = x0.detach()
                M = whitening(sim, x0, unflatten, amat0, cell0, extra, pixels, norm)
                z = torch.zeros_like(x0, requires_grad=True)
                opt = torch.optim.LBFGS([z], lr=1.0, max_iter=20, history_size=30,
                                        line_search_fn="strong_wolfe", tolerance_grad=1e-16,
                                        tolerance_change=1e-24)

                def closure():
                    opt.zero_grad()
                    loss = sim.render_loss(model_values(unflatten(x0 + M @ z), amat0, cell0,
                                                        extra),
                                           target=data, weights=weights, units="flag") / norm
                    loss.backward()
                    state["evals"] += 1
                    state["loss"] = float(loss.detach())
                    return loss

                stage_history = []
                for step in range(max_steps):
                    opt.step(closure)
                    stage_history.append(state["loss"])
                    say(f"crystal {size:g}·N  step {step + 1:2d}  loss {state['loss']:.3e}  "
                        f"evaluations {state['evals']:4d}  {time.perf_counter() - t0:6.1f} s")
                    if state["loss"] < 1e-26 or (len(stage_history) > 1 and
                                                 stage_history[-1] >= 0.999 * stage_history[-2]):
                        break
                history += stage_history
                x0 = (x0 + M @ z).detach()
                z = torch.zeros_like(x0)
            recovered = {n: v.detach().clone() for n, v in unflatten(x0).items()}
    finally:
        os.chdir(here)
        torch.set_num_threads(old_threads)
    return RefinementResult(truth=truth, start=start, recovered=recovered, history=history,
                            evaluations=state["evals"], pixels=int(pixels.shape[0]),
                            spots=n_spots, seconds=time.perf_counter() - t0)


def report(result: RefinementResult) -> list:
    fmt = lambda t: " ".join(f"{v:12.6f}" for v in t.reshape(-1).tolist())  # noqa: E731
    lines = []
    for n, err in result.errors().items():
        lines.append(f"{n} ({UNIT_LABELS[n]}), max |error| {err:.1e} (tolerance "
                     f"{TOLERANCE[n]:g})")
        lines.append(f"  truth     {fmt(result.truth[n])}")
        lines.append(f"  start     {fmt(result.start[n])}")
        lines.append(f"  recovered {fmt(result.recovered[n])}")
    lines.append(f"{result.evaluations} loss+gradient evaluations over {result.pixels} shoebox "
                 f"pixels in {result.seconds:.1f} s")
    lines.append("recovered" if result.recovered_within() else "NOT recovered")
    return lines


def main(**kw) -> RefinementResult:
    result = refine(**kw)
    print("\n".join(report(result)))
    return result


if __name__ == "__main__":
    sys.exit(0 if main().recovered_within() else 1)
