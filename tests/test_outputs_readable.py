"""Our output files read back with other people's readers (fabio, h5py, PIL, json), checked against
the configuration, nanoBragg.c's documented formulas and the golden corpus: SMV pixels and header,
the NeXus/NXmx geometry, the PNG picture, and the run manifest."""

import hashlib
import io
import json
import math
from pathlib import Path
import re
import struct
import time
import zlib

import numpy as np
import pytest

from nanobragg_cli.cli import main
from nanobragg_cli.config import Config
from nanobragg_cli.manifest import UNITS

from conftest import CASES, GOLDEN, cached_run, golden_case_names, needs_golden

fabio = pytest.importorskip("fabio")
h5py = pytest.importorskip("h5py")

# A non-square detector and an off-centre beam, so that any fast/slow or x/y swap shows.
GEOMETRY = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
            "-lambda", "1.2", "-distance", "120", "-pixel", "0.15", "-detpixels_x", "48",
            "-detpixels_y", "32", "-Xbeam", "2", "-Ybeam", "3.5", "-noprogress"]
FAST, SLOW = 48, 32


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def run_in(tmp_path, monkeypatch, capsys):
    """Run the CLI in tmp_path; returns (stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*argv):
        rc = main(list(argv))
        out = capsys.readouterr()
        assert rc == 0, out.err
        return out.out, out.err
    return run


@pytest.fixture
def images(run_in, tmp_path):
    run_in(*GEOMETRY, "-seed", "3", "-floatfile", "f.bin", "-intfile", "i.img", "-noisefile",
           "n.img", "-pgmfile", "p.pgm", "--hdf5", "out.h5", "--png", "out.png",
           "--manifest", "run.json")
    float_img = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(SLOW, FAST)
    return tmp_path, float_img


# ---- SMV through fabio ----------------------------------------------------------------------

def test_fabio_reads_the_int_image_pixels(images):
    folder, float_img = images
    img = fabio.open(str(folder / "i.img"))
    assert img.data.shape == (SLOW, FAST)
    scale = 55000.0 / float(float_img.max())  # nanoBragg.c's automatic -scale
    expected = np.floor((float_img.astype(np.float64) * scale + 40.0 + 0.5).astype(np.float32))
    assert np.array_equal(img.data.astype(np.float64), np.clip(expected, 0, 65535))


def test_fabio_reads_the_header_values_of_the_configuration(images):
    folder, _ = images
    for name in ("i.img", "n.img"):
        h = fabio.open(str(folder / name)).header
        assert int(h["SIZE1"]) == FAST and int(h["SIZE2"]) == SLOW
        assert float(h["PIXEL_SIZE"]) == pytest.approx(0.15)
        assert float(h["DISTANCE"]) == pytest.approx(120.0)
        assert float(h["WAVELENGTH"]) == pytest.approx(1.2)
        assert float(h["BEAM_CENTER_X"]) == pytest.approx(2.0)
        assert float(h["BEAM_CENTER_Y"]) == pytest.approx(3.5)


def test_fabio_reads_the_noise_image_as_poisson_counts(images):
    folder, float_img = images
    noise = fabio.open(str(folder / "n.img")).data.astype(np.float64) - 40.0  # -adc
    assert noise.shape == (SLOW, FAST) and noise.min() >= 0
    assert np.array_equal(noise, np.round(noise))
    expected = float(float_img.astype(np.float64).sum())
    assert abs(noise.sum() - expected) < 6 * math.sqrt(expected)  # Poisson total


@needs_golden
def test_fabio_reads_ours_and_nanoBraggs_int_image_alike():
    run = cached_run("twotheta")
    ours = fabio.open(io.BytesIO(run.files["int"]))
    ref = fabio.open(str(GOLDEN / "cases" / "twotheta" / "int.img"))
    assert np.array_equal(ours.data, ref.data)
    for key in ("SIZE1", "SIZE2", "PIXEL_SIZE", "DISTANCE", "WAVELENGTH", "BEAM_CENTER_X",
                "BEAM_CENTER_Y"):
        assert ours.header[key] == ref.header[key], key


def test_pgm_reads_back_with_nanoBraggs_scaling(images):
    PIL = pytest.importorskip("PIL.Image")
    folder, float_img = images
    text = (folder / "p.pgm").read_bytes()
    scale = float(re.search(rb"# pixels scaled by (\S+)", text).group(1))
    pgm = np.asarray(PIL.open(folder / "p.pgm"))
    assert pgm.shape == (SLOW, FAST)
    expected = np.minimum(float_img.astype(np.float64) * scale, 255.0).astype(np.uint8)
    assert np.array_equal(pgm, expected)


# ---- PNG ------------------------------------------------------------------------------------

def _png_chunks(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        yield kind, body
        pos += 12 + n


def test_png_is_a_valid_grayscale_picture_of_the_image(images):
    PIL = pytest.importorskip("PIL.Image")
    folder, float_img = images
    chunks = dict(_png_chunks((folder / "out.png").read_bytes()))
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour) == (FAST, SLOW, 8, 0)
    pic = PIL.open(folder / "out.png")
    assert pic.mode == "L" and pic.size == (FAST, SLOW)
    grey = np.asarray(pic).astype(int)
    f = float_img.astype(np.float64)
    assert grey[np.unravel_index(np.argmax(f), f.shape)] == 255   # the brightest spot is white
    assert (grey[f <= 0] == 0).all()                               # nothing is black-on-grey
    order = np.argsort(f.reshape(-1), kind="stable")
    assert (np.diff(grey.reshape(-1)[order]) >= 0).all()           # brighter never darker


@pytest.mark.parametrize("scale", ["log", "sqrt"])
def test_png_scale_keeps_weak_spots_visible(run_in, tmp_path, scale):
    PIL = pytest.importorskip("PIL.Image")
    run_in(*GEOMETRY, "-nonoise", "-nopgm", "--png", "p.png", "--png-scale", scale)
    f = np.fromfile(tmp_path / "floatimage.bin", dtype="<f4").reshape(SLOW, FAST)
    grey = np.asarray(PIL.open(tmp_path / "p.png")).astype(int)
    weak = (f >= 0.01 * f.max()) & (f < 0.05 * f.max())  # a linear scale would show 1-12 of 255
    assert weak.any()
    assert grey[weak].min() >= 25


# ---- NeXus / HDF5 ---------------------------------------------------------------------------

def test_hdf5_has_the_nxmx_layout_and_the_image(images):
    folder, float_img = images
    with h5py.File(folder / "out.h5", "r") as f:
        entry = f["entry"]
        assert entry.attrs["NX_class"] == "NXentry"
        assert entry["definition"][()].decode() == "NXmx"
        det = f["entry/instrument/detector"]
        assert det.attrs["NX_class"] == "NXdetector"
        assert f["entry/instrument"].attrs["NX_class"] == "NXinstrument"
        assert f["entry/instrument/beam"].attrs["NX_class"] == "NXbeam"
        assert det["module"].attrs["NX_class"] == "NXdetector_module"
        assert f["entry/data"].attrs["signal"] == "data"
        data = det["data"][()]
        assert data.dtype == np.float32 and np.array_equal(data, float_img)
        assert np.array_equal(f["entry/data/data"][()], float_img)
        assert det["x_pixel_size"][()] == pytest.approx(0.15e-3)
        assert det["x_pixel_size"].attrs["units"] == "m"
        assert det["y_pixel_size"][()] == pytest.approx(0.15e-3)
        assert det["distance"][()] == pytest.approx(0.12)
        beam = f["entry/instrument/beam/incident_wavelength"]
        assert beam[()] == pytest.approx(1.2e-10) and beam.attrs["units"] == "m"
        # MOSFLM: the beam spot is Xbeam (slow) and Ybeam (fast) plus half a pixel, in pixels
        assert det["beam_center_x"][()] == pytest.approx((3.5 + 0.075) / 0.15)
        assert det["beam_center_y"][()] == pytest.approx((2.0 + 0.075) / 0.15)
        assert list(det["module/data_size"][()]) == [SLOW, FAST]


def _beam_spot(f) -> np.ndarray:
    from nanobragg_cli.io.hdf5 import mcstas_pixel_position
    det = f["entry/instrument/detector"]
    return mcstas_pixel_position(f, det["beam_center_y"][()], det["beam_center_x"][()])


def test_hdf5_transformations_are_unit_vectors_with_nexus_attributes(images):
    folder, _ = images
    with h5py.File(folder / "out.h5", "r") as f:
        m = f["entry/instrument/detector/module"]
        fast = np.asarray(m["fast_pixel_direction"].attrs["vector"])
        slow = np.asarray(m["slow_pixel_direction"].attrs["vector"])
        for name in ("module_offset", "fast_pixel_direction", "slow_pixel_direction"):
            ds = m[name]
            assert ds.attrs["transformation_type"] == "translation"
            assert ds.attrs["units"] == "m"
            assert np.linalg.norm(ds.attrs["vector"]) == pytest.approx(1.0)
            assert "depends_on" in ds.attrs
        assert float(np.dot(fast, slow)) == pytest.approx(0.0, abs=1e-12)
        # McStas frame: the beam runs along +z and hits the detector at (0, 0, distance)
        assert _beam_spot(f) == pytest.approx([0.0, 0.0, 0.12], abs=1e-12)


@needs_golden
@pytest.mark.parametrize("name", golden_case_names(
    lambda c: c.name in ("twotheta", "det_rot_sample", "conv_xds", "custom_vectors")))
def test_hdf5_geometry_is_nanoBraggs_geometry(name):
    """pix0 and the fast/slow axes in the NeXus file are nanoBragg.c's (TRACE_C lines), rotated
    into the McStas frame; the beam spot lies on the beam at nanoBragg.c's DISTANCE."""
    from nanobragg_cli.io.hdf5 import hdf5_bytes, lab_to_mcstas
    case = CASES[name]
    run = cached_run(name)
    trace = case.trace_log(case.trace_pixels[0]).read_text()

    def c_vec(key):
        m = re.search(rf"TRACE_C: {key} (\S+) (\S+) (\S+)", trace)
        return np.array([float(x) for x in m.groups()])

    incident = c_vec("incident_vec")
    R = lab_to_mcstas(incident)
    assert R @ incident == pytest.approx([0, 0, 1], abs=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    # where the beam meets nanoBragg.c's detector plane (with 2theta, not its header DISTANCE)
    pix0_c, f_c, s_c = c_vec("pix0_vector_meters"), c_vec("fdet_vec"), c_vec("sdet_vec")
    normal = np.cross(f_c, s_c)
    distance = float(np.dot(pix0_c, normal) / np.dot(incident, normal))
    if "-twotheta" not in case.args or "0" == case.args[case.args.index("-twotheta") + 1]:
        header = float(fabio.open(str(case.dir / "int.img")).header["DISTANCE"]) * 1e-3
        assert distance == pytest.approx(header, rel=1e-5)
    with h5py.File(io.BytesIO(hdf5_bytes(run.result)), "r") as f:
        m = f["entry/instrument/detector/module"]
        pix0 = m["module_offset"][()] * np.asarray(m["module_offset"].attrs["vector"])
        assert pix0 == pytest.approx(R @ c_vec("pix0_vector_meters"), abs=1e-12)
        fast = np.asarray(m["fast_pixel_direction"].attrs["vector"])
        slow = np.asarray(m["slow_pixel_direction"].attrs["vector"])
        assert fast == pytest.approx(R @ c_vec("fdet_vec"), abs=1e-12)
        assert slow == pytest.approx(R @ c_vec("sdet_vec"), abs=1e-12)
        assert _beam_spot(f) == pytest.approx([0.0, 0.0, distance], abs=1e-12)
        assert f["entry/instrument/detector/distance"][()] == pytest.approx(distance, abs=1e-12)


# ---- manifest -------------------------------------------------------------------------------

def test_manifest_records_argv_versions_and_si_configuration(images):
    import torch
    folder, _ = images
    man = json.loads((folder / "run.json").read_text())
    assert man["argv"][:len(GEOMETRY)] == GEOMETRY
    assert man["versions"]["torch"] == torch.__version__
    assert man["versions"]["numpy"] == np.__version__
    assert re.match(r"\d+\.\d+\.\d+", man["versions"]["python"])
    assert man["device"] == "cpu" and man["dtype"] == "float64"
    assert isinstance(man["threads"], int) and man["threads"] >= 1
    assert man["wall_seconds"] > 0
    det, beam = man["config"]["detector"], man["config"]["beam"]
    assert det["pixel_size"] == pytest.approx(0.15e-3)
    assert man["config_units"]["detector"]["pixel_size"] == "m"
    assert det["distance"] == pytest.approx(0.12)
    assert beam["lambda0"] == pytest.approx(1.2e-10)
    assert man["config_units"]["beam"]["lambda0"] == "m"
    assert (det["fpixels"], det["spixels"]) == (FAST, SLOW)
    assert man["seeds"]["noise"] == {"value": -3, "repeat_with": ["-seed", "3"],
                                     "source": "flag", "used": True}


def test_manifest_hashes_every_output_file(images):
    folder, _ = images
    man = json.loads((folder / "run.json").read_text())
    flags = {o["flag"]: o for o in man["outputs"]}
    assert set(flags) == {"-floatfile", "-intfile", "-pgmfile", "-noisefile", "--hdf5", "--png"}
    for rec in man["outputs"]:
        assert rec["sha256"] == sha256(folder / rec["path"]), rec["path"]
        assert rec["bytes"] == (folder / rec["path"]).stat().st_size


def test_the_planned_outputs_are_the_files_written_and_manifested(images):
    """One output list: what preflight checks (planned_outputs) is what the run writes, in the
    manifest's order, the manifest last."""
    from nanobragg_cli.simulate import planned_outputs, prepare_run
    folder, _ = images
    argv = [*GEOMETRY, "-seed", "3", "-floatfile", "f.bin", "-intfile", "i.img", "-noisefile",
            "n.img", "-pgmfile", "p.pgm", "--hdf5", "out.h5", "--png", "out.png",
            "--manifest", "run.json"]
    run = prepare_run(argv)
    planned = planned_outputs(run.cfg, run.tool)
    assert sorted(p.name for p in folder.iterdir()) == sorted(path for _, path in planned)
    man = json.loads((folder / "run.json").read_text())
    assert [(o["flag"], o["path"]) for o in man["outputs"]] + [("--manifest", "run.json")] \
        == planned


def test_manifest_hashes_inputs_and_the_structure_factor_cache(run_in, tmp_path):
    Path("in.hkl").write_text("0 0 0 100\n1 0 0 50\n0 1 0 25\n")
    Path("in.mat").write_text("0.01 0 0\n0 0.01 0\n0 0 0.01\n")
    run_in("-mat", "in.mat", "-hkl", "in.hkl", "-N", "2", "-detpixels", "8", "-nonoise",
           "-nopgm", "-noprogress", "--manifest", "run.json")
    man = json.loads(Path("run.json").read_text())
    inputs = {i["flag"]: i for i in man["inputs"]}
    assert inputs["-hkl"]["sha256"] == sha256("in.hkl")
    assert inputs["-mat"]["sha256"] == sha256("in.mat")
    dump = {o["flag"]: o for o in man["outputs"]}["-dump"]
    assert dump["path"] == "Fdump.bin" and dump["sha256"] == sha256("Fdump.bin")
    # a second run without -hkl reads the cache: then it is an input
    run_in("-mat", "in.mat", "-N", "2", "-detpixels", "8", "-nonoise", "-nopgm", "-noprogress",
           "--manifest", "run2.json")
    man2 = json.loads(Path("run2.json").read_text())
    assert {i["flag"]: i["sha256"] for i in man2["inputs"]}["-dump"] == sha256("Fdump.bin")


def test_every_config_field_has_a_unit_entry():
    from dataclasses import fields
    from nanobragg_cli import config
    sections = {"detector": config.DetectorConfig, "beam": config.BeamConfig,
                "crystal": config.CrystalConfig, "sampling": config.SamplingConfig,
                "output": config.OutputConfig}
    assert {f.name for f in fields(Config)} == set(sections) | {"warnings", "c_notes"}
    for name, cls in sections.items():
        assert {f.name for f in fields(cls)} == set(UNITS[name]), name


def test_time_based_noise_seed_is_printed_recorded_and_repeats_the_image(run_in, tmp_path):
    args = [*GEOMETRY, "-nopgm", "-floatfile", "f.bin", "-intfile", "i.img"]
    t0 = time.time()
    _, err = run_in(*args, "-noisefile", "a.img", "--manifest", "a.json")
    m = re.search(r"noise seed: (-?\d+) \(repeat with -seed (\d+)\)", err)
    assert m, err
    seed, repeat = int(m.group(1)), m.group(2)
    assert seed == -int(repeat) and abs(-seed - t0) < 120   # nanoBragg.c's -time(0)
    man = json.loads(Path("a.json").read_text())
    assert man["seeds"]["noise"]["value"] == seed
    assert man["seeds"]["noise"]["source"] == "time"
    _, err2 = run_in(*args, "-noisefile", "b.img", "-seed", repeat)
    assert "noise seed" not in err2
    assert sha256("a.img") == sha256("b.img")


def test_time_based_misset_seed_is_printed_and_repeats_the_orientation(run_in):
    args = ["-cell", "70", "80", "90", "90", "90", "90", "-misset", "random", "-default_F", "1",
            "-detpixels", "8", "-nonoise", "-nopgm", "-noprogress"]
    out1, err = run_in(*args)
    m = re.search(r"random misset seed: (-?\d+) \(repeat with -misset_seed (\d+)\)", err)
    assert m, err
    angles = re.search(r"random orientation misset angles: .*", out1).group(0)
    out2, _ = run_in(*args, "-misset_seed", m.group(2))
    assert re.search(r"random orientation misset angles: .*", out2).group(0) == angles
