"""nanobragg_cli.scene_flat: a scene as the fused kernel's package sees it (tensor inputs and a
key of everything else)."""

import pytest
import torch

from nanobragg_cli.kernel import render_chunk
from nanobragg_cli.scene import build_scene
from nanobragg_cli.scene_flat import NOT_FOR_THE_KERNEL, flatten, rebuild
from nanobragg_cli.simulate import prepare

BASE = ["-cell", "70", "80", "90", "90", "95", "100", "-default_F", "100", "-N", "4",
        "-lambda", "1", "-distance", "80", "-detpixels", "24", "-pixel", "0.4",
        "-oversample", "2", "-mosaic", "0.3", "-mosaic_domains", "3", "-phisteps", "2",
        "-osc", "0.2"]


def _scene(extra=()):
    return build_scene(prepare(BASE + list(extra)))


def test_rebuilt_scene_renders_the_same_chunk():
    """The copy made from the flat tensors is the scene: the eager kernel gives the same bytes
    (what the exported package computes is this copy's arithmetic)."""
    scene = _scene()
    flat = flatten(scene)
    copy = rebuild(flat.spec, [t.clone() for t in flat.tensors])
    pix = torch.arange(24 * 24)
    killed = torch.zeros((), dtype=torch.bool)
    a = render_chunk(scene, pix, killed)
    b = render_chunk(copy, pix, killed)
    assert torch.equal(a.values, b.values) and a.values.abs().max() > 0


def test_values_are_inputs_and_the_rest_is_the_key():
    """Distance, beam centre, wavelength and misset are tensors (same key); cell counts,
    detector size and the polarization switch are not (another key)."""
    key = flatten(_scene()).key
    assert flatten(_scene(["-distance", "95", "-Xbeam", "4", "-lambda", "1.2",
                           "-misset", "1", "2", "3"])).key == key
    for extra in (["-N", "5"], ["-detpixels", "25"], ["-nopolar"]):
        assert flatten(_scene(extra)).key != key, extra


def test_attributes_left_out_of_the_key_cannot_be_read():
    copy = rebuild(flatten(_scene()).spec, flatten(_scene()).tensors)
    assert copy.params is NOT_FOR_THE_KERNEL
    with pytest.raises(AttributeError, match="left out of its key"):
        copy.params.distance
    with pytest.raises(AttributeError):
        bool(copy.mask)
