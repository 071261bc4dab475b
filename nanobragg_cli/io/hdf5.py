"""``--hdf5 FILE``: the float image as NeXus/HDF5 in the NXmx layout (h5py, an optional extra).

Layout (SI units in each field's ``units`` attribute)::

    /entry                          NXentry, definition = "NXmx", default = "data"
      data/data                     NXdata: hard link to instrument/detector/data
      instrument/                   NXinstrument
        beam/incident_wavelength    NXbeam (m)
        detector/                   NXdetector
          data                      float32 [slow, fast], photons per pixel
          x_pixel_size, y_pixel_size, distance (m), beam_center_x, beam_center_y (pixel),
          sensor_thickness (m, if any), depends_on -> module/module_offset
          module/                   NXdetector_module: data_origin, data_size,
            module_offset           translation to the corner of pixel (0, 0) (pix0)
            fast_pixel_direction    translation, vector = fast axis, value = pixel size
            slow_pixel_direction    translation, vector = slow axis, value = pixel size
      sample/                       NXsample, depends_on = "." (a series: transformations/phi,
                                    the start angle of every frame, phi_increment_set)

NeXus vectors are in the McStas frame (z along the beam, y up): our lab vectors are rotated by
:func:`lab_to_mcstas`, the rotation used by the SMV header's DIALS_ORIGIN for the MOSFLM frame
(beam along +x), turned minimally onto the beam for the other conventions. The matrix is stored
in the detector's ``nanobragg_lab_to_mcstas`` attribute.

The file is built in memory and written with the atomic writer like every other output.
"""

from __future__ import annotations

from dataclasses import dataclass
import io
import math

import numpy as np

from ..errors import NanoBraggError

# MOSFLM lab frame (beam +x) -> McStas: x' = -z, y' = y, z' = x (DIALS_ORIGIN's mapping, then a
# half turn about y from DIALS' frame, whose beam runs along -z, to McStas', along +z).
_MOSFLM_TO_MCSTAS = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def require_h5py():
    """Import h5py or raise a one-line error saying how to get it."""
    try:
        import h5py
    except ImportError:
        raise NanoBraggError("--hdf5: needs the h5py package, which is not installed "
                             "(pip install 'nanobragg_cli[hdf5]' or pip install h5py)") from None
    return h5py


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector a onto unit vector b (3x3)."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    s = float(np.linalg.norm(v))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        # opposite: half turn about an axis perpendicular to a (y if possible, keeps "up")
        axis = np.array([0.0, 1.0, 0.0])
        if abs(np.dot(axis, a)) > 0.9:
            axis = np.array([1.0, 0.0, 0.0])
        axis = axis - np.dot(axis, a) * a
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = v / s
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + s * K + (1.0 - c) * (K @ K)


def lab_to_mcstas(beam) -> np.ndarray:
    """3x3 proper rotation R with R @ beam = (0, 0, 1); R is the DIALS_ORIGIN mapping of the
    MOSFLM frame when the beam runs along +x."""
    b = np.asarray(beam, dtype=np.float64)
    b = b / np.linalg.norm(b)
    first = _MOSFLM_TO_MCSTAS @ b
    return _rotation_between(first, np.array([0.0, 0.0, 1.0])) @ _MOSFLM_TO_MCSTAS


@dataclass
class NXmxImage:
    """What the NXmx file records, in our lab frame and SI units.

    image: float32 [slow, fast] (photons per pixel); fdet, sdet, odet, beam: unit vectors;
    pix0: corner of pixel (0, 0), m; pixel_size, distance (sample to beam spot along the beam),
    Fbeam, Sbeam (beam spot from pix0 along fast/slow; see :func:`beam_spot`), wavelength,
    sensor_thickness: m.
    """
    image: np.ndarray
    pixel_size: float
    distance: float
    wavelength: float
    fdet: tuple
    sdet: tuple
    odet: tuple
    beam: tuple
    pix0: tuple
    Fbeam: float
    Sbeam: float
    sensor_thickness: float = 0.0
    title: str = ""


def beam_spot(pix0, fdet, sdet, beam) -> tuple:
    """Where the beam meets the detector plane: (distance along the beam, Fbeam, Sbeam), m.

    Computed from the final detector vectors. (nanoBragg.c's own Fbeam/Sbeam/distance use the
    detector normal before the 2theta swing, so with -twotheta they are not on the beam.)
    Returns NaNs when the beam runs parallel to the detector plane.
    """
    p0, f, s, b = (np.asarray(v, dtype=np.float64) for v in (pix0, fdet, sdet, beam))
    n = np.cross(f, s)
    along = float(np.dot(b, n))
    if abs(along) < 1e-12:
        return math.nan, math.nan, math.nan
    t = float(np.dot(p0, n)) / along
    # coordinates along f and s by solving, not projecting: given axes need not be orthogonal
    (u, v), *_ = np.linalg.lstsq(np.stack((f, s), axis=1), t * b - p0, rcond=None)
    return t, float(u), float(v)


def nxmx_from_result(res) -> NXmxImage:
    """The NXmxImage of a simulation result (final detector geometry after rotations)."""
    g = res.scene.det

    def vec(t):
        return tuple(float(x) for x in t.detach().cpu())

    pix0, fdet, sdet, beam = vec(g.pix0), vec(g.fdet), vec(g.sdet), vec(g.beam)
    distance, Fbeam, Sbeam = beam_spot(pix0, fdet, sdet, beam)
    return NXmxImage(
        image=np.asarray(res.image, dtype=np.float32), pixel_size=float(g.pixel_size),
        distance=distance, wavelength=float(res.cfg.beam.lambda0),
        fdet=fdet, sdet=sdet, odet=vec(g.odet), beam=beam, pix0=pix0, Fbeam=Fbeam, Sbeam=Sbeam,
        sensor_thickness=float(res.cfg.sampling.detector_thick))


def _group(parent, name: str, nx_class: str):
    grp = parent.create_group(name)
    grp.attrs["NX_class"] = nx_class
    return grp


def _field(group, name: str, value, units: str | None = None, **attrs):
    ds = group.create_dataset(name, data=value)
    if units is not None:
        ds.attrs["units"] = units
    for key, val in attrs.items():
        ds.attrs[key] = val
    return ds


def _write_layout(f, nx: NXmxImage, shape: tuple, chunks: tuple, rotation: dict | None = None):
    """Write the NXmx layout into the open h5py file ``f``; returns the detector's (empty) data
    dataset of ``shape`` (float32, gzip, ``chunks``). ``rotation`` (a series): {"angles": start
    angle of each frame (deg), "increment": deg per frame, "axis": lab unit vector}."""
    R = lab_to_mcstas(nx.beam)

    def mc(v):
        return R @ np.asarray(v, dtype=np.float64)

    pix0 = mc(nx.pix0)
    pix0_len = float(np.linalg.norm(pix0))
    pix0_dir = pix0 / pix0_len if pix0_len > 0 else np.array([0.0, 0.0, 1.0])
    slow, fast = shape[-2:]
    det_path = "/entry/instrument/detector"
    offset_path = f"{det_path}/module/module_offset"

    f.attrs["creator"] = "nanobragg_cli"
    f.attrs["default"] = "entry"
    entry = _group(f, "entry", "NXentry")
    entry.attrs["default"] = "data"
    _field(entry, "definition", "NXmx")
    if nx.title:
        _field(entry, "title", nx.title)
    instrument = _group(entry, "instrument", "NXinstrument")
    _field(instrument, "name", "nanobragg_cli simulation")
    beam = _group(instrument, "beam", "NXbeam")
    _field(beam, "incident_wavelength", nx.wavelength, "m")

    det = _group(instrument, "detector", "NXdetector")
    det.attrs["nanobragg_lab_to_mcstas"] = R
    data = det.create_dataset("data", shape=shape, dtype="<f4", compression="gzip",
                              compression_opts=4, chunks=chunks)
    data.attrs["units"] = "photons"
    data.attrs["long_name"] = "simulated photons per pixel (float image)"
    _field(det, "description", "nanoBragg simulation (nanobragg_cli)")
    _field(det, "x_pixel_size", nx.pixel_size, "m")
    _field(det, "y_pixel_size", nx.pixel_size, "m")
    if math.isfinite(nx.distance):  # else the beam never meets the detector plane
        _field(det, "distance", nx.distance, "m",
               long_name="sample to the beam's intersection with the detector plane")
        _field(det, "beam_center_x", nx.Fbeam / nx.pixel_size, "pixel",
               long_name="beam spot along fast, from the outer corner of pixel 0")
        _field(det, "beam_center_y", nx.Sbeam / nx.pixel_size, "pixel",
               long_name="beam spot along slow, from the outer corner of pixel 0")
    if nx.sensor_thickness > 0:
        _field(det, "sensor_thickness", nx.sensor_thickness, "m")
    _field(det, "depends_on", offset_path)

    module = _group(det, "module", "NXdetector_module")
    _field(module, "data_origin", np.array([0, 0], dtype=np.int32))
    _field(module, "data_size", np.array([slow, fast], dtype=np.int32))
    _field(module, "data_stride", np.array([1, 1], dtype=np.int32))
    translation = dict(transformation_type="translation", offset=np.zeros(3))
    _field(module, "module_offset", pix0_len, "m", vector=pix0_dir, depends_on=".",
           **translation)
    _field(module, "fast_pixel_direction", nx.pixel_size, "m", vector=mc(nx.fdet),
           depends_on=offset_path, **translation)
    _field(module, "slow_pixel_direction", nx.pixel_size, "m", vector=mc(nx.sdet),
           depends_on=offset_path, **translation)

    sample = _group(entry, "sample", "NXsample")
    if rotation is None:
        _field(sample, "depends_on", ".")
    else:
        axis_path = "/entry/sample/transformations/phi"
        _field(sample, "depends_on", axis_path)
        tr = _group(sample, "transformations", "NXtransformations")
        angles = np.asarray(rotation["angles"], dtype=np.float64)
        inc = float(rotation["increment"])
        _field(tr, "phi", angles, "deg", transformation_type="rotation",
               vector=mc(rotation["axis"]), offset=np.zeros(3), depends_on=".",
               long_name="spindle angle at the start of each frame")
        _field(tr, "phi_increment_set", inc, "deg", long_name="oscillation range of a frame")
        _field(tr, "phi_end", angles + inc, "deg")
    nxdata = _group(entry, "data", "NXdata")
    nxdata.attrs["signal"] = "data"
    nxdata["data"] = data
    return data


def nxmx_bytes(nx: NXmxImage) -> bytes:
    """The complete HDF5 file (bytes) of ``nx`` in the NXmx layout described above."""
    h5py = require_h5py()
    img = np.asarray(nx.image, dtype=np.float32)
    slow, fast = img.shape
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        data = _write_layout(f, nx, img.shape, (min(slow, 256), min(fast, 256)))
        data[...] = img
    return buf.getvalue()


class NXmxSeries:
    """One NXmx file for a rotation series, filled frame by frame, built in memory (compressed)
    and written in one piece by the caller: /entry/data/data is float32 (frames, slow, fast),
    one frame per chunk; /entry/sample/transformations/phi holds each frame's start angle, with
    ``phi_increment_set`` (and ``phi_end``), so a sweep reader sees one scan."""

    def __init__(self, nx: NXmxImage, angles_deg: list, increment_deg: float, axis: tuple):
        h5py = require_h5py()
        slow, fast = np.asarray(nx.image).shape
        self.buf = io.BytesIO()
        self.file = h5py.File(self.buf, "w")
        self.data = _write_layout(self.file, nx, (len(angles_deg), slow, fast), (1, slow, fast),
                                  {"angles": angles_deg, "increment": increment_deg,
                                   "axis": axis})

    def put(self, k: int, image: np.ndarray) -> None:
        """Store frame ``k`` (0-based position in the file): float32 [slow, fast]."""
        self.data[k] = np.asarray(image, dtype=np.float32)

    def finish(self) -> bytes:
        self.file.close()
        return self.buf.getvalue()


def hdf5_bytes(res, title: str = "") -> bytes:
    """The --hdf5 file of a simulation result."""
    nx = nxmx_from_result(res)
    nx.title = title
    return nxmx_bytes(nx)


def mcstas_pixel_position(f, slow: float, fast: float) -> np.ndarray:
    """Position (m, McStas frame) of a point (slow, fast) in pixel units from an open NXmx file
    written by :func:`nxmx_bytes`: module_offset + fast·fast_pixel_direction + slow·slow_...
    (a reader's view of the geometry, used by the tests and handy for users)."""
    m = f["/entry/instrument/detector/module"]

    def translation(name):
        ds = m[name]
        return float(ds[()]) * np.asarray(ds.attrs["vector"], dtype=np.float64)

    return (translation("module_offset") + fast * translation("fast_pixel_direction")
            + slow * translation("slow_pixel_direction"))


__all__ = ["NXmxImage", "beam_spot", "hdf5_bytes", "lab_to_mcstas", "mcstas_pixel_position",
           "nxmx_bytes", "nxmx_from_result", "require_h5py"]
