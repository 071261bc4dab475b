"""examples/refine_geometry.py: distance, beam centre, cell and misset perturbed from the values
that rendered a reference image are recovered from that image alone by gradient descent."""

import time

import torch

from conftest import load_example



def test_refinement_recovers_geometry_and_cell_from_the_image(capsys):
    example = load_example("refine_geometry")
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    result = example.main()
    seconds = time.perf_counter() - t0
    assert torch.get_num_threads() == threads          # the example restores the thread count
    out = capsys.readouterr().out
    assert "recovered" in out and "step  1" in out
    for name in example.NAMES:
        truth = result.truth[name]
        start_err = ((result.start[name] - truth).abs() / truth.abs()).max()
        assert start_err > 1e-3, f"{name} did not start perturbed"
        err = ((result.recovered[name] - truth).abs() / truth.abs()).max()
        assert err < 1e-4, f"{name}: recovered {result.recovered[name]} vs {result.truth[name]}"
    assert result.history[-1] < 1e-12 * result.history[0]
    print(f"refinement example: {result.evaluations} renders, {seconds:.1f} s")
