"""Tests of the file-format modules (nanobragg_cli.io) against the golden C corpus and by hand.

The golden corpus is found via $NB_GOLDEN_DIR (default tests/golden); tests that need
it are skipped, with that reason, when it is absent.
"""

from __future__ import annotations

import errno
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from nanobragg_cli.errors import InputFileError, NanoBraggError
from nanobragg_cli.io import (
    HKLGrid,
    SMVHeader,
    atomic_write_bytes,
    fdump_bytes,
    float_image_bytes,
    format_smv_header,
    hkl_grid,
    int_image,
    pgm_bytes,
    read_fdump,
    read_float_image,
    read_hkl,
    read_mat,
    read_smv,
    read_sourcefile,
    smv_bytes,
    smv_value,
)
from nanobragg_cli.io import atomic as atomic_mod
from nanobragg_cli.io._text import c_atof
from nanobragg_cli.golden import default_golden_dir

REPO = Path(__file__).resolve().parents[1]
GOLDEN = default_golden_dir()
NO_GOLDEN = f"golden corpus not found at {GOLDEN} (set NB_GOLDEN_DIR)"
needs_golden = pytest.mark.skipif(not (GOLDEN / "cases").is_dir(), reason=NO_GOLDEN)
INPUTS = GOLDEN / "inputs"


def _int_cases():
    if not (GOLDEN / "cases").is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_GOLDEN))]
    return sorted(p.parent.name for p in (GOLDEN / "cases").glob("*/int.img"))


def _meta(case: str) -> dict:
    return json.loads((GOLDEN / "cases" / case / "meta.json").read_text())


def _flag(args: list[str], flag: str, n: int = 1) -> list[str] | None:
    if flag not in args:
        return None
    i = len(args) - 1 - args[::-1].index(flag)  # last one wins, as in C
    return args[i + 1 : i + 1 + n]


def _roi(args):
    r = _flag(args, "-roi", 4)
    return tuple(int(v) for v in r) if r else None


# -------------------------------------------------------------------------------------- SMV


def _header_from_text(text: str) -> SMVHeader:
    """Rebuild an SMVHeader from a header's text, line by line (exact keys)."""

    def v(key: str) -> float:
        # "\nKEY" pins the match to the start of a line, so DISTANCE cannot hit CLOSE_DISTANCE
        value = smv_value(text, "\n" + key)
        assert not math.isnan(value), key
        return value

    line = text.split("\nDIALS_ORIGIN=", 1)[1].split("\n", 1)[0]
    dials = tuple(float(x) for x in line.split(","))
    return SMVHeader(
        size1=int(v("SIZE1")),
        size2=int(v("SIZE2")),
        pixel_size=v("PIXEL_SIZE"),
        distance=v("DISTANCE"),
        wavelength=v("WAVELENGTH"),
        beam_center_x=v("BEAM_CENTER_X"),
        beam_center_y=v("BEAM_CENTER_Y"),
        adxv_center_x=v("ADXV_CENTER_X"),
        adxv_center_y=v("ADXV_CENTER_Y"),
        mosflm_center_x=v("MOSFLM_CENTER_X"),
        mosflm_center_y=v("MOSFLM_CENTER_Y"),
        denzo_x_beam=v("DENZO_X_BEAM"),
        denzo_y_beam=v("DENZO_Y_BEAM"),
        dials_origin=dials,
        xds_orgx=v("XDS_ORGX"),
        xds_orgy=v("XDS_ORGY"),
        close_distance=v("CLOSE_DISTANCE"),
        phi=v("PHI"),
        osc_start=v("OSC_START"),
        osc_range=v("OSC_RANGE"),
        twotheta=v("TWOTHETA"),
    )


@pytest.mark.parametrize("case", _int_cases())
def test_golden_smv_header_reformats_exactly(case):
    raw = (GOLDEN / "cases" / case / "int.img").read_bytes()
    img = read_smv(GOLDEN / "cases" / case / "int.img")
    header = _header_from_text(img.header_text)
    assert (img.width, img.height) == (header.size1, header.size2)
    assert tuple(_meta(case)["shape_slow_fast"]) == (img.height, img.width)
    assert format_smv_header(header) == raw[:512]


@pytest.mark.parametrize("case", _int_cases())
def test_golden_int_image_byte_exact(case):
    d = GOLDEN / "cases" / case
    args = _meta(case)["args"]
    img = read_smv(d / "int.img")
    fimg = read_float_image(d / "float.bin", (img.height, img.width))

    s = _flag(args, "-scale")
    if s and float(s[0]) > 0:
        scale = float(s[0])
    else:
        mx = float(fimg.max())
        scale = 55000.0 / mx if mx > 0 else 1.0
    printed = [ln for ln in (d / "stdout.txt").read_text().splitlines() if ln.startswith("intfile_scale = ")]
    assert printed, "stdout.txt lacks intfile_scale"
    assert "%g" % scale == printed[-1].split("=", 1)[1].strip()
    a = _flag(args, "-adc")
    adc = float(a[0]) if a else 40.0

    ints = int_image(fimg, scale, adc, _roi(args))
    assert ints.dtype == np.uint16
    raw = (d / "int.img").read_bytes()
    assert ints.astype("<u2").tobytes() == raw[512:]
    # and the whole file, header included
    assert smv_bytes(_header_from_text(img.header_text), ints) == raw


@needs_golden
def test_golden_float_image_roundtrip(tmp_path):
    raw = (GOLDEN / "cases" / "cubic_basic" / "float.bin").read_bytes()
    img = read_float_image(GOLDEN / "cases" / "cubic_basic" / "float.bin", (128, 128))
    assert img.dtype == np.float32 and img.shape == (128, 128)
    assert float_image_bytes(img) == raw
    assert float(img.max()) == _meta("cubic_basic")["max"]
    with pytest.raises(InputFileError, match=r"float\.bin.*expected 4096"):
        read_float_image(GOLDEN / "cases" / "cubic_basic" / "float.bin", (32, 32))


def test_float_image_bytes_layout():
    img = np.arange(6, dtype=np.float64).reshape(2, 3)  # [slow, fast]
    b = float_image_bytes(img)
    assert np.frombuffer(b, "<f4").tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        float_image_bytes(np.zeros(4))


def _hdr(**kw) -> SMVHeader:
    base = dict(
        size1=4, size2=3, pixel_size=0.1, distance=100.0, wavelength=1.0, beam_center_x=0.2,
        beam_center_y=0.15, adxv_center_x=0.2, adxv_center_y=0.1, mosflm_center_x=0.1,
        mosflm_center_y=0.15, denzo_x_beam=0.15, denzo_y_beam=0.2, dials_origin=(-0.2, 0.15, -100.0),
        xds_orgx=2.0, xds_orgy=1.5, close_distance=100.0, phi=0.0, osc_start=0.0, osc_range=0.0,
        twotheta=0.0,
    )
    base.update(kw)
    return SMVHeader(**base)


def test_format_smv_header_text_and_limits():
    h = format_smv_header(_hdr(distance=98.48077530122080, wavelength=1e-5, twotheta=-0.0))
    assert len(h) == 512
    text = h.decode("ascii")
    assert "\nDISTANCE=98.4808;\n" in text and "\nWAVELENGTH=1e-05;\n" in text
    assert "\nDIALS_ORIGIN=-0.2,0.15,-100\nXDS_ORGX=2;" in text
    assert "\nTWOTHETA=-0;\n" in text
    assert text.rstrip(" ").endswith("BEAMLINE=fake;\n}\f")
    # 22 numbers printed as "-1.23457e-100" cannot fit: refuse rather than corrupt the file
    huge = {f: -1.23456789e-100 for f in SMVHeader.__dataclass_fields__ if f not in ("size1", "size2", "dials_origin")}
    with pytest.raises(NanoBraggError, match="512"):
        format_smv_header(_hdr(**huge, dials_origin=(-1.5e-100,) * 3))


def test_int_image_conversion_rules():
    # float32 rounding before floor: 2.5 - 2^-30 + 0.5 is 3 - 2^-30 in double, 3.0f in float
    one = np.zeros((1, 1), np.float32)
    assert int_image(one, 1.0, 2.5 - 2.0**-30)[0, 0] == 3
    f = np.array([[-1e6, 1e9, np.nan, 1.49], [2.5, 0.0, 7.0, 65534.6]], np.float32)
    out = int_image(f, 1.0, 0.0)
    assert out.tolist() == [[0, 65535, 0, 1], [3, 0, 7, 65535]]
    # ROI: inclusive, fast (x) then slow (y); outside pixels are 0 (not adc)
    g = np.ones((4, 5), np.float32)
    r = int_image(g, 10.0, 40.0, roi=(1, 3, 2, 2))
    expect = np.zeros((4, 5), np.uint16)
    expect[2, 1:4] = 50
    assert np.array_equal(r, expect)
    assert not int_image(g, 1.0, 40.0, roi=(10, 20, 0, 3)).any()  # ROI off the image


def test_smv_bytes_and_read_back(tmp_path):
    data = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    p = tmp_path / "x.img"
    p.write_bytes(smv_bytes(_hdr(), data))
    img = read_smv(p)
    assert (img.width, img.height) == (4, 3)
    assert np.array_equal(img.data, data) and img.data.dtype == np.uint16
    assert img.value("PIXEL_SIZE") == 0.1
    with pytest.raises(ValueError):
        smv_bytes(_hdr(), data.T)


@needs_golden
def test_read_smv_golden_inputs():
    mask = read_smv(INPUTS / "mask.img")
    assert (mask.width, mask.height) == (128, 128) and mask.data.shape == (128, 128)
    assert (mask.data == 0).any() and (mask.data != 0).any()
    assert mask.value("BEAM_CENTER_Y") == 6.45
    hdr = read_smv(INPUTS / "header.img")
    assert hdr.value("TWOTHETA") == 20.0
    assert hdr.value("ORGX") == 65.0  # finds XDS_ORGX
    assert hdr.value("ORGY") == 373.02
    assert hdr.value("WAVELENGTH") == 1.0
    assert hdr.value("DISTANCE") == 93.9693  # (CLOSE_DISTANCE's line: the last occurrence)
    assert math.isnan(hdr.value("NO_SUCH_KEY"))


def test_smv_value_semantics():
    text = "{\nHEADER_BYTES=512;\nDISTANCE=100;\nCLOSE_DISTANCE=93.5;\nXDS_ORGX=65.5;\nNOEQ\n"
    assert smv_value(text, "DISTANCE") == 93.5  # last occurrence is inside CLOSE_DISTANCE
    assert smv_value(text, "ORGX") == 65.5
    assert math.isnan(smv_value(text, "ORGY"))
    assert smv_value(text, "NOEQ") == 0.0  # no '=' after the keyword
    assert smv_value("A=12.5abc;\n", "A") == 12.5
    assert smv_value("A=  -3e2;\n", "A") == -300.0
    assert smv_value("A=junk;\n", "A") == 0.0
    assert smv_value("B=1;\0A=2;", "A") != 2  # a NUL ends the header, as in C


def test_c_atof():
    assert c_atof("  42.5xyz") == 42.5
    assert c_atof("\n\t-1.5e3;") == -1500.0
    assert c_atof("1e") == 1.0 and c_atof(".5") == 0.5 and c_atof("5.") == 5.0
    assert c_atof("") == 0.0 and c_atof("abc") == 0.0 and c_atof("-") == 0.0 and c_atof(".") == 0.0
    assert c_atof("+7") == 7.0
    assert c_atof("0x10") == 16.0 and c_atof("0x") == 0.0
    assert c_atof("inf") == math.inf and c_atof("-Infinity") == -math.inf and math.isnan(c_atof("nan"))
    assert c_atof("1e999") == math.inf


def _smv_file(tmp_path, header: str, data: bytes, name="t.img") -> Path:
    p = tmp_path / name
    p.write_bytes(header.encode("latin-1") + data)
    return p


def test_read_smv_variants_and_errors(tmp_path):
    vals = np.array([[1, 2], [258, 65535]], dtype=np.uint16)
    # big-endian, 1024-byte header, BYTE_ORDER's last occurrence decides
    text = "{\nHEADER_BYTES=1024;\nBYTE_ORDER=little_endian;\nSIZE1=2;\nSIZE2=2;\nBYTE_ORDER=big_endian;\n}\f"
    p = _smv_file(tmp_path, text.ljust(1024), vals.astype(">u2").tobytes())
    img = read_smv(p)
    assert img.data.tolist() == vals.tolist() and len(img.header_text) == 1024
    # DETECTOR_TYPE= is not TYPE=; TYPE=unsigned_short is accepted
    text = "{\nHEADER_BYTES=512;\nDETECTOR_TYPE=CCD;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=2;\nSIZE2=2;\n}\f"
    assert read_smv(_smv_file(tmp_path, text.ljust(512), vals.astype("<u2").tobytes())).data.tolist() == vals.tolist()
    # DETECTOR_DIMENSIONS instead of SIZE1/SIZE2
    text = "{\nHEADER_BYTES=512;\nBYTE_ORDER=little_endian;\nDETECTOR_DIMENSIONS=2;\n}\f"
    assert read_smv(_smv_file(tmp_path, text.ljust(512), vals.astype("<u2").tobytes())).data.tolist() == vals.tolist()

    good = "{\nHEADER_BYTES=512;\nBYTE_ORDER=little_endian;\nSIZE1=2;\nSIZE2=2;\n}\f".ljust(512)
    cases = {
        "not an SMV": ("P5\n2 2\n255\n".ljust(512), b"\0" * 8),
        "truncated": (good, b"\0" * 7),
        "BYTE_ORDER": (good.replace("BYTE_ORDER", "BYTE_ORDEX"), b"\0" * 8),
        "SIZE1/SIZE2": (good.replace("SIZE1=2", "SIZE1=0"), b"\0" * 8),
        "TYPE=float": (good.replace("SIZE1", "TYPE=float;\nSIZE1"), b"\0" * 8),
        "HEADER_BYTES": (good.replace("=512", "=abc"), b"\0" * 8),
    }
    for want, (head, data) in cases.items():
        with pytest.raises(InputFileError, match=want) as ei:
            read_smv(_smv_file(tmp_path, head, data, name="bad.img"))
        assert "bad.img" in str(ei.value)
    with pytest.raises(InputFileError, match="no such file"):
        read_smv(tmp_path / "missing.img")
    (tmp_path / "short.img").write_bytes(b"{\nHEADER_BYTES=512;")
    with pytest.raises(InputFileError, match="truncated"):
        read_smv(tmp_path / "short.img")


# -------------------------------------------------------------------------------------- PGM


@needs_golden
def test_golden_pgm_byte_exact():
    d = GOLDEN / "cases" / "pgm_output"
    args = _meta("pgm_output")["args"]
    scale = float(_flag(args, "-pgmscale")[0])
    fimg = read_float_image(d / "float.bin", tuple(_meta("pgm_output")["shape_slow_fast"]))
    assert pgm_bytes(fimg, scale, _roi(args)) == (d / "image.pgm").read_bytes()


def test_pgm_rules():
    f = np.array([[-5.0, 0.99, 10.0], [1000.0, np.nan, 2.6]], np.float32)
    b = pgm_bytes(f, 1.0, None)
    head = b"P5\n3 2\n# pixels scaled by 1\n255\n"
    assert b[: len(head)] == head
    assert list(b[len(head) :]) == [0, 0, 10, 255, 0, 2]
    b = pgm_bytes(np.full((2, 3), 100.0, np.float32), 0.1234567, roi=(1, 2, 1, 1))
    head = b"P5\n3 2\n# pixels scaled by 0.123457\n255\n"
    assert b[: len(head)] == head and list(b[len(head) :]) == [0, 0, 0, 0, 12, 12]


# -------------------------------------------------------------------------------------- HKL


def _parse_simple(path: Path):
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    return np.array([[int(r[0]), int(r[1]), int(r[2])] for r in rows]), np.array([float(r[3]) for r in rows])


@needs_golden
def test_read_hkl_p1_small_and_grid():
    hkl, F = read_hkl(INPUTS / "P1_small.hkl")
    assert hkl.dtype == np.int32 and hkl.shape == (15625, 3) and F.dtype == np.float64
    assert hkl[0].tolist() == [-12, -12, -12] and F[0] == 454.13
    assert hkl[1].tolist() == [-12, -12, -11] and F[1] == 339.63
    ref_hkl, ref_F = _parse_simple(INPUTS / "P1_small.hkl")
    assert np.array_equal(hkl, ref_hkl) and np.array_equal(F, ref_F)
    g = hkl_grid(hkl, F, 0.0)
    assert (g.h_min, g.h_max, g.k_min, g.k_max, g.l_min, g.l_max) == (-12, 12, -12, 12, -12, 12)
    assert g.F.shape == (26, 26, 26) and g.ranges == (25, 25, 25)
    assert g.F[0, 0, 0] == 454.13 and g.F[0, 0, 3] == 210.82
    for i in (0, 777, 15624):
        h, k, l = hkl[i]  # noqa: E741
        assert g.lookup(h, k, l) == F[i]
    assert not g.F[25].any() and not g.F[:, 25].any() and not g.F[:, :, 25].any()
    assert g.lookup(13, 0, 0) is None


@needs_golden
def test_read_hkl_scaled_fast_and_exact():
    t0 = time.perf_counter()
    hkl, F = read_hkl(INPUTS / "scaled.hkl")
    elapsed = time.perf_counter() - t0
    assert hkl.shape == (64333, 3)
    ref_hkl, ref_F = _parse_simple(INPUTS / "scaled.hkl")
    assert np.array_equal(hkl, ref_hkl) and np.array_equal(F, ref_F)
    assert hkl[0].tolist() == [23, 15, -1] and F[0] == 23.00
    g = hkl_grid(hkl, F, 0.0)
    assert (g.h_min, g.h_max) == (ref_hkl[:, 0].min(), ref_hkl[:, 0].max())
    assert (g.k_min, g.k_max) == (ref_hkl[:, 1].min(), ref_hkl[:, 1].max())
    assert (g.l_min, g.l_max) == (ref_hkl[:, 2].min(), ref_hkl[:, 2].max())
    assert g.lookup(22, 16, -1) == 32.32
    assert elapsed < 2.0, f"read_hkl(scaled.hkl) took {elapsed:.3f} s"


def test_hkl_grid_default_F_padding_and_duplicates():
    hkl = np.array([[0, 0, 0], [1, 2, 1], [0, 0, 0], [1, 1, 0]])
    F = np.array([1.0, 2.0, 3.0, 4.0])
    g = hkl_grid(hkl, F, default_F=7.5)
    assert g.F.shape == (3, 4, 3) and g.ranges == (2, 3, 2)
    assert g.F[0, 0, 0] == 3.0  # later duplicate wins
    assert g.F[1, 2, 1] == 2.0 and g.F[1, 1, 0] == 4.0
    assert g.F[0, 1, 1] == 7.5  # unlisted in-range slot
    assert (g.F[2] == 0).all() and (g.F[:, 3] == 0).all() and (g.F[:, :, 2] == 0).all()  # padding
    g0 = hkl_grid(hkl, F, default_F=0.0)
    assert g0.F[0, 1, 1] == 0.0
    with pytest.raises(NanoBraggError):
        hkl_grid(np.zeros((0, 3), int), np.zeros(0), 0.0)


def test_fdump_roundtrip_and_format(tmp_path):
    hkl = np.array([[-2, 0, 1], [1, 3, 4]])
    g = hkl_grid(hkl, np.array([1.5, -2.25]), default_F=3.0)
    b = fdump_bytes(g)
    head = b"-2 1 0 3 1 4\n\f"
    assert b.startswith(head) and len(b) == len(head) + 8 * 5 * 5 * 5
    assert np.frombuffer(b, "<f8", offset=len(head))[0] == 1.5  # [h=-2,k=0,l=1] first, l fastest
    assert np.frombuffer(b, "<f8", offset=len(head))[1] == 3.0
    p = tmp_path / "Fdump.bin"
    p.write_bytes(b)
    r = read_fdump(p)
    assert isinstance(r, HKLGrid)
    assert (r.h_min, r.h_max, r.k_min, r.k_max, r.l_min, r.l_max) == (-2, 1, 0, 3, 1, 4)
    assert np.array_equal(r.F, g.F)
    assert fdump_bytes(r) == b
    # C's documented size: 22 + 8*42^3 bytes for +-20
    g20 = HKLGrid(-20, 20, -20, 20, -20, 20, np.zeros((42, 42, 42)))
    assert len(fdump_bytes(g20)) == 592726
    for bad, want in ((b[:-3], "truncated"), (b + b"\0" * 8, "extra bytes"),
                      (b"1 2 3\n\f" + b[len(head):], "six integers"), (b"no header", "form feed"),
                      (b"3 1 0 0 0 0\n\f", "inverted")):
        p.write_bytes(bad)
        with pytest.raises(InputFileError, match=want) as ei:
            read_fdump(p)
        assert "Fdump.bin" in str(ei.value)


@needs_golden
def test_fdump_roundtrip_p1_small(tmp_path):
    g = hkl_grid(*read_hkl(INPUTS / "P1_small.hkl"), 0.0)
    atomic_write_bytes(tmp_path / "Fdump.bin", fdump_bytes(g))
    assert (tmp_path / "Fdump.bin").stat().st_size == len(b"-12 12 -12 12 -12 12\n\f") + 8 * 26**3
    r = read_fdump(tmp_path / "Fdump.bin")
    assert np.array_equal(r.F, g.F)


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("1 2 3 4.5\n1 2 3\n", 2, "expected 4 columns"),
        ("# comment\n\n1 2 3 4.5\n1 2 x 4\n", 4, "l is not a number: 'x'"),
        ("1 2 3 4\n0 1.5 3 4\n", 2, "k = 1.5 is not an integer"),
        ("1 2 3 4 5\n", 1, "found 5"),
        ("1 2 3 4\n1 2 3 nan\n", 2, "F is not a number"),
        ("1 2 3 4\r\n1 2 3 4,5\r\n", 2, "F is not a number"),
    ],
)
def test_read_hkl_malformed(tmp_path, text, line, what):
    p = tmp_path / "bad.hkl"
    p.write_text(text)
    with pytest.raises(InputFileError) as ei:
        read_hkl(p)
    msg = str(ei.value)
    assert "bad.hkl" in msg and f"line {line}:" in msg and what in msg, msg


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_read_hkl_empty(tmp_path, text):
    p = tmp_path / "empty.hkl"
    p.write_text(text)
    with pytest.raises(InputFileError, match=r"empty\.hkl.*no reflections"):
        read_hkl(p)


def test_read_hkl_lenient_forms(tmp_path):
    p = tmp_path / "ok.hkl"
    p.write_text("# h k l F\n  1 2 3 4.5\r\n\n-1\t0\t2.0   1e2 # trailing comment\n")
    hkl, F = read_hkl(p)
    assert hkl.tolist() == [[1, 2, 3], [-1, 0, 2]] and F.tolist() == [4.5, 100.0]
    with pytest.raises(InputFileError, match="no such file"):
        read_hkl(tmp_path / "missing.hkl")
    with pytest.raises(InputFileError, match="directory"):
        read_hkl(tmp_path)


# ------------------------------------------------------------------------------------ -mat


@needs_golden
def test_read_mat_golden():
    m = read_mat(INPUTS / "A.mat")
    assert m.shape == (3, 3) and m.dtype == np.float64
    # file rows are x, y, z; columns a*, b*, c*  ->  our rows are a*, b*, c*
    assert m[0].tolist() == [-0.02837711, -0.02871390, 0.01050048]  # a*
    assert m[1].tolist() == [-0.00305386, 0.01019549, -0.03209440]  # b*
    assert m[2].tolist() == [0.02535816, -0.01400049, -0.01036054]  # c*


def test_read_mat_layout_and_errors(tmp_path):
    p = tmp_path / "m.mat"
    p.write_text("1 2 3\n4 5\n6 7 8 9\n0.5 0.5 0.5\n  extra MOSFLM lines: U matrix, cell ...\n")
    assert read_mat(p).tolist() == [[1, 4, 7], [2, 5, 8], [3, 6, 9]]
    p.write_text("1 2 3\n4 5 6\n7 8\n")
    with pytest.raises(InputFileError, match=r"m\.mat: expected 9 numbers.*found 8"):
        read_mat(p)
    p.write_text("1 2 3\n4 five 6\n7 8 9\n")
    with pytest.raises(InputFileError, match=r"m\.mat, line 2: expected a number \(value 5 of 9\), got 'five'"):
        read_mat(p)
    p.write_text("")
    with pytest.raises(InputFileError, match="found 0"):
        read_mat(p)


# ------------------------------------------------------------------------------ -sourcefile


@needs_golden
def test_read_sourcefile_golden():
    s = read_sourcefile(INPUTS / "sources.txt")
    assert s.shape == (3, 5)
    assert s.tolist() == [[-10, 0, 0, 1.0, 1e-10], [-10, 0.002, 0, 0.5, 1.01e-10], [-10, 0, -0.002, 0.8, 0.99e-10]]


def test_read_sourcefile_rules(tmp_path):
    p = tmp_path / "src.txt"
    p.write_text("# X Y Z I lambda\n\n  -10,0;0:1!2e-10 99 junk\n\t-10 1\n,,\n0 0 1\r\n")
    s = read_sourcefile(p)
    assert s.shape == (3, 5)
    assert s[0].tolist() == [-10, 0, 0, 1, 2e-10]  # 6th+ columns ignored as in C
    assert s[1, :2].tolist() == [-10, 1] and np.isnan(s[1, 2:]).all()
    assert s[2, :3].tolist() == [0, 0, 1] and np.isnan(s[2, 3:]).all()
    p.write_text("-10 0 0\n-10 0 abc\n")
    with pytest.raises(InputFileError, match=r"src\.txt, line 2: column 3 \(Z\) is not a number: 'abc'"):
        read_sourcefile(p)
    p.write_text("\n \n")
    with pytest.raises(InputFileError, match=r"src\.txt: contains no sources"):
        read_sourcefile(p)


# ---------------------------------------------------------------------------------- atomic


def test_atomic_write_success_and_mode(tmp_path):
    p = tmp_path / "out.bin"
    atomic_write_bytes(p, b"abc")
    assert p.read_bytes() == b"abc"
    mask = os.umask(0o022)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)
    atomic_write_bytes(str(p), memoryview(b"defg"))
    assert p.read_bytes() == b"defg"
    atomic_write_bytes(p, (c for c in (b"12", b"34")))
    assert p.read_bytes() == b"1234"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_write_interrupted_leaves_nothing(tmp_path, exc):
    def chunks():
        yield b"x" * 1000
        raise exc

    p = tmp_path / "img.bin"
    with pytest.raises(type(exc)):
        atomic_write_bytes(p, chunks())
    assert os.listdir(tmp_path) == []  # neither the target nor a temp file
    p.write_bytes(b"old")
    with pytest.raises(type(exc)):
        atomic_write_bytes(p, chunks())
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["img.bin"]


def test_atomic_write_disk_full_and_bad_folder(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_mod.os, "fsync", full)
    p = tmp_path / "big.img"
    with pytest.raises(NanoBraggError, match=r"big\.img: no space left on device"):
        atomic_write_bytes(p, b"data")
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    with pytest.raises(NanoBraggError, match=r"nowhere.*out\.img: the folder does not exist"):
        atomic_write_bytes(tmp_path / "nowhere" / "out.img", b"data")
    (tmp_path / "adir").mkdir()
    with pytest.raises(NanoBraggError, match="folder of that name"):
        atomic_write_bytes(tmp_path / "adir", b"data")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_atomic_write_device_full():
    with pytest.raises(NanoBraggError, match="/dev/full: no space left on device"):
        atomic_write_bytes("/dev/full", b"x" * 100000)


def test_atomic_write_long_name(tmp_path):
    p = tmp_path / ("n" * 250 + ".img")
    atomic_write_bytes(p, b"abc")
    assert p.read_bytes() == b"abc" and len(os.listdir(tmp_path)) == 1


def test_atomic_write_follows_symlink(tmp_path):
    real = tmp_path / "real.img"
    real.write_bytes(b"old")
    link = tmp_path / "link.img"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
