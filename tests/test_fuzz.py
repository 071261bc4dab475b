"""Property-based fuzzing (hypothesis, bounded to well under a minute): the flag parser, the tool
options, a few complete tiny runs, and the input-file readers. Whatever the input, the outcome is
either a valid result or a one-line user error (NanoBraggError / InputFileError, exit 9); never
another exception, never a traceback."""

import contextlib
import io
import os
from pathlib import Path
import string
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st
import numpy as np
import pytest

from nanobragg_cli.cli import main
from nanobragg_cli.errors import InputFileError, NanoBraggError
from nanobragg_cli.flags import FLAGS
from nanobragg_cli.simulate import TOOL_FLAGS, prepare, split_tool_options

# NB_FUZZ_SCALE=20 (say) fuzzes 20x longer with fresh random examples; the default is bounded
# and reproducible, for CI.
SCALE = int(os.environ.get("NB_FUZZ_SCALE", "1"))


def fuzz(examples: int):
    """Bounded, reproducible hypothesis settings (no example database written to the repo)."""
    return settings(max_examples=examples * SCALE, database=None, deadline=None,
                    derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def empty_dir():
    """An empty working folder: file-valued flags name files that do not exist."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="nb_fuzz_") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(old)


# ---- argv built from the flag table -----------------------------------------------------------

numbers = st.one_of(
    st.integers(-10 ** 12, 10 ** 12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1e3, 1e3).map(lambda x: f"{x:.3g}"),
    st.sampled_from(["0", "-0", "1", "-1", "2", "1e999", "-1e-999", "0x10", "1.5", "3.", ".5"]),
)
garbage = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_.+eE ", max_size=12),
    st.sampled_from(["", "-", "--", "nan", "inf", "-inf", "random", "sample", "beam", "NaN",
                     "1,5", "½", "٣", "１", "\x00", " 5 "]),
)
values = st.one_of(numbers, numbers, garbage)


@st.composite
def flag_tokens(draw):
    flag = draw(st.sampled_from(FLAGS))
    spellings = list(flag.names) + [p + draw(st.sampled_from(["", "x", "_2"]))
                                     for p in flag.prefixes]
    name = draw(st.sampled_from(spellings))
    n = {"cell": 6, "misset": 3}.get(flag.nargs, flag.nargs)
    count = draw(st.sampled_from([n, n, n, max(0, n - 1), n + 1]))
    return [name] + draw(st.lists(values, min_size=count, max_size=count))


argvs = st.lists(flag_tokens(), max_size=8).map(lambda parts: [t for p in parts for t in p])


@fuzz(400)
@given(argv=argvs)
def test_any_argv_parses_or_is_one_user_error(empty_dir, argv):
    try:
        cfg = prepare(argv)
    except NanoBraggError as err:
        message = str(err)
        assert message and "\n" not in message
        return
    # a configuration that got through is one the renderer can use
    d, s = cfg.detector, cfg.sampling
    assert d.fpixels >= 1 and d.spixels >= 1 and d.pixel_size > 0 and d.distance > 0
    assert cfg.beam.lambda0 > 0 and s.phisteps >= 1
    assert s.oversample == -1 or s.oversample >= 0
    assert min(cfg.crystal.Na, cfg.crystal.Nb, cfg.crystal.Nc) >= 0
    assert cfg.crystal.mosaic_domains >= 1 and cfg.beam.dispsteps >= 1


@fuzz(200)
@given(argv=st.lists(st.one_of(st.sampled_from(sorted(TOOL_FLAGS)), values,
                               st.sampled_from(["--c-parity=1", "--device=cuda:0", "--x"])),
                     max_size=6))
def test_any_tool_options_split_or_are_one_user_error(argv):
    try:
        rest, tool = split_tool_options(argv)
    except NanoBraggError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert not any(t.startswith("--") for t in rest)
    assert tool.dtype in ("float64", "float32") and tool.png_scale in ("log", "sqrt")


# ---- a few complete tiny runs -------------------------------------------------------------

def _pick(*options):
    return st.sampled_from(options)


small_run = st.fixed_dictionaries({}, optional={
    "-N": _pick(["-N", "1"], ["-N", "3"], ["-N", "0"]),
    "-mosaic": _pick(["-mosaic", "0.5", "-mosaic_domains", "2"], ["-mosaic", "0"]),
    "-phi": _pick(["-phi", "0", "-osc", "1", "-phisteps", "2"], ["-phisteps", "0"]),
    "-oversample": _pick(["-oversample", "1"], ["-oversample", "2"], ["-oversample", "0"]),
    "-lambda": _pick(["-lambda", "0.7"], ["-energy", "9000"]),
    "-distance": _pick(["-distance", "60"], ["-close_distance", "80"]),
    "-twotheta": _pick(["-twotheta", "15"], ["-detector_rotx", "3", "-detector_rotz", "-4"]),
    "-convention": _pick(["-xds"], ["-dials"], ["-adxv"], ["-denzo"], ["-mosflm"]),
    "-shape": _pick(["-round_xtal"], ["-gauss_xtal"], ["-tophat_spots"]),
    "-thick": _pick(["-detector_thick", "50", "-detector_thicksteps", "2"]),
    "-div": _pick(["-divergence", "0.2", "-divsteps", "2"], ["-dispersion", "1",
                                                             "-dispsteps", "2"]),
    "-roi": _pick(["-roi", "1", "3", "0", "2"], ["-roi", "9", "12", "0", "1"]),
    "-water": _pick(["-water", "10"]),
    "-polar": _pick(["-polar", "0.5"], ["-nopolar"]),
    "--c-parity": _pick(["--c-parity"], ["--dtype", "float32"]),
}).map(lambda d: [t for part in d.values() for t in part])


@fuzz(12)
@given(extra=small_run)
def test_tiny_runs_write_their_images_or_fail_in_one_line(empty_dir, extra):
    for p in empty_dir.iterdir():
        p.unlink()
    argv = ["-cell", "50", "60", "70", "90", "90", "90", "-default_F", "10", "-detpixels", "6",
            "-seed", "1", "-noprogress", "-nopgm", *extra]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(argv)
    lines = err.getvalue().strip().splitlines()
    assert rc in (0, 9), err.getvalue()
    if rc == 9:
        assert sum(line.startswith("nanobragg: error:") for line in lines) == 1
        assert not (empty_dir / "floatimage.bin").exists()
        return
    image = np.fromfile(empty_dir / "floatimage.bin", dtype="<f4")
    assert image.shape == (36,) and np.isfinite(image).all() and (image >= 0).all()
    assert (empty_dir / "intimage.img").exists() and (empty_dir / "noiseimage.img").exists()


# ---- the input-file readers ---------------------------------------------------------------

def _read_with(reader, data: bytes):
    with tempfile.NamedTemporaryFile(prefix="nb_fuzz_", delete=False) as fh:
        fh.write(data)
        path = fh.name
    try:
        return reader(path)
    finally:
        os.unlink(path)


number_text = st.one_of(st.integers(-50, 50).map(str), st.floats(-1e6, 1e6).map(repr),
                        st.sampled_from(["nan", "inf", "1e999", "x", "#", "1.5", "-0", "+3"]))
lines_text = st.lists(st.lists(number_text, max_size=6).map(" ".join), max_size=12)
text_files = st.one_of(
    lines_text.map(lambda ls: "\n".join(ls).encode()),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


def _readers():
    from nanobragg_cli.io.hkl import read_fdump, read_hkl
    from nanobragg_cli.io.mosflm import read_mat
    from nanobragg_cli.io.sources import read_sourcefile
    return {"hkl": read_hkl, "mat": read_mat, "sourcefile": read_sourcefile, "fdump": read_fdump}


@fuzz(120)
@given(kind=st.sampled_from(["hkl", "mat", "sourcefile", "fdump"]), data=text_files)
def test_text_readers_return_a_result_or_an_input_file_error(kind, data):
    try:
        result = _read_with(_readers()[kind], data)
    except InputFileError as err:
        assert str(err) and "\n" not in str(err)
        return
    if kind == "hkl":
        hkl, F = result
        assert hkl.shape == (len(F), 3) and np.isfinite(F).all()
    elif kind == "mat":
        assert result.shape == (3, 3) and np.isfinite(result).all()
    elif kind == "sourcefile":
        assert result.ndim == 2 and result.shape[1] == 5


@st.composite
def smv_files(draw):
    """Headers close to real ones (so the reader gets past its first checks), then pixels."""
    keys = {
        "HEADER_BYTES": draw(st.sampled_from(["512", "1024", "0", "-5", "abc", "1e9", "600"])),
        "BYTE_ORDER": draw(st.sampled_from(["little_endian", "big_endian", ""])),
        "TYPE": draw(st.sampled_from(["unsigned_short", "float", ""])),
        "SIZE1": draw(st.sampled_from(["4", "0", "-3", "1e12", "x", "3"])),
        "SIZE2": draw(st.sampled_from(["4", "2", "0", "99999999999"])),
        "PIXEL_SIZE": draw(number_text), "DISTANCE": draw(number_text),
    }
    dropped = draw(st.sets(st.sampled_from(sorted(keys)), max_size=3))
    text = "{\n" + "".join(f"{k}={v};\n" for k, v in keys.items() if k not in dropped) + "}\f"
    head = text.encode()
    size = draw(st.sampled_from([512, 1024, len(head)]))
    head = head[:size].ljust(size, b" ")
    return head + draw(st.binary(max_size=64))


@fuzz(120)
@given(data=st.one_of(smv_files(), st.binary(max_size=200)))
def test_smv_reader_returns_an_image_or_an_input_file_error(data):
    from nanobragg_cli.io.smv import read_smv
    try:
        img = _read_with(read_smv, data)
    except InputFileError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert img.data.shape == (img.height, img.width) and img.data.dtype == np.uint16
