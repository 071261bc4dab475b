"""examples/refine_supervisor.py, reduced: on the supervisor command's geometry (its A matrix,
hkl and 2463x2527 detector frame, 2 φ steps), distance, beam centre, misset and cell perturbed
by 0.5 mm / 0.5 mm / 0.2° / ~0.3 % are recovered from the 11x11 shoeboxes of the 80 brightest
spots (the example uses 150 of 13x13), through Simulator.render_loss. About 1.5 min on 2 cores."""

import time

import torch

from conftest import load_example, needs_golden



@needs_golden
def test_supervisor_geometry_refinement_recovers_distance_beam_centre_misset_and_cell(capsys):
    example = load_example("refine_supervisor")
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    result = example.main(n_spots=80, half=5, max_steps=4)
    seconds = time.perf_counter() - t0
    assert torch.get_num_threads() == threads
    out = capsys.readouterr().out
    assert "shoebox pixels" in out and "recovered" in out
    for name in example.NAMES:
        start_err = float((result.start[name] - result.truth[name]).abs().max())
        assert start_err >= 0.19, f"{name} did not start perturbed"
        err = result.errors()[name]
        assert err < example.TOLERANCE[name], f"{name}: off by {err}"
    assert result.pixels <= 80 * 11 * 11
    print(f"supervisor refinement (reduced): {result.evaluations} evaluations, {seconds:.1f} s")
