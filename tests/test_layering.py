"""The seams of the package: the engine reads a run only through the Scene (never the Config),
the mode's functions are chosen once when the scene is built, and a trace is a typed record."""

from dataclasses import fields
from pathlib import Path
import re

import pytest
import torch

import nanobragg_cli
from nanobragg_cli import arithmetic
from nanobragg_cli.scene import Scene, build_scene
from nanobragg_cli.simulate import prepare

PACKAGE = Path(nanobragg_cli.__file__).parent
ARGV = ["-cell", "70", "70", "70", "90", "90", "90", "-default_F", "100", "-N", "3",
        "-lambda", "1", "-distance", "100", "-detpixels", "16", "-pixel", "0.1"]


@pytest.mark.parametrize("module", ["kernel.py", "render.py", "trace.py", "outputs.py",
                                    "arithmetic.py", "c_order.py", "physics.py"])
def test_engine_traces_and_outputs_do_not_reach_into_the_config(module):
    text = (PACKAGE / module).read_text()
    assert not re.search(r"scene\.cfg\b", text), module


def test_scene_holds_no_config():
    assert "cfg" not in {f.name for f in fields(Scene)}


@pytest.mark.parametrize("c_parity, chosen", [(False, arithmetic.DEFAULT),
                                              (True, arithmetic.C_PARITY)])
def test_the_mode_functions_are_chosen_once_when_the_scene_is_built(c_parity, chosen):
    scene = build_scene(prepare(ARGV), c_parity=c_parity)
    assert scene.arith is chosen
    # every function of the set differs between the modes, so a swapped set cannot pass
    assert all(getattr(arithmetic.DEFAULT, f.name) is not getattr(arithmetic.C_PARITY, f.name)
               for f in fields(arithmetic.Arithmetic))


def test_layer_thickness_of_each_mode():
    # -detector_thick 100 um with 3 layers: nanoBragg.c's thick/(N-1), the default mode's thick/N
    cfg = prepare(ARGV + ["-detector_thick", "100", "-detector_abs", "200",
                          "-detector_thicksteps", "3"])
    assert float(build_scene(cfg, c_parity=True).thickstep) == pytest.approx(50e-6, rel=1e-12)
    assert float(build_scene(cfg).thickstep) == pytest.approx(100e-6 / 3, rel=1e-12)


def test_a_trace_is_a_typed_record_with_the_documented_shapes():
    from nanobragg_cli.render import render
    from nanobragg_cli.trace import PixelTrace
    scene = build_scene(prepare(ARGV + ["-oversample", "2", "-phisteps", "2", "-osc", "0.1"]))
    cap = render(scene, trace_pixels=[(5, 6)]).traces[(5, 6)]
    assert isinstance(cap, PixelTrace)
    T, SS, S, Phi, M = 1, 4, 1, 2, 1
    assert cap.pos.shape == (T, SS, 3)
    assert cap.scat.shape == (T, SS, S, 3)
    assert cap.h.shape == (T, SS, S, Phi, M, 3)
    assert cap.F_latt.shape == (T, SS, S, Phi, M)
    assert cap.executed.dtype == torch.bool and cap.executed.shape == (T, SS, S, Phi, M)
