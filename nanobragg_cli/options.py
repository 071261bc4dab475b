"""The state nanoBragg.c's flags write into, in SI units, before any derived default is applied.

Every field mirrors one variable of the C program (same meaning, converted to metres and radians
at the flag boundary exactly as nanoBragg.c converts it). ``nan``/``-1`` mark "not given", as in C,
because several derived defaults (section 1.3 of nanoBragg_c.md) depend on what was given.
"""

from dataclasses import dataclass, field
import math
import time

NAN = math.nan


@dataclass
class RawOptions:
    # crystal
    Na: float = 1.0
    Nb: float = 1.0
    Nc: float = 1.0
    user_cell: bool = False
    cell: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # Å, rad
    misset: str = "none"  # none | angles | random
    misset_angles: tuple = (0.0, 0.0, 0.0)  # rad
    sample_x: float = 0.0  # m
    sample_y: float = 0.0
    sample_z: float = 0.0
    matfile: str | None = None
    hklfile: str | None = None
    dumpfile: str = "Fdump.bin"
    default_F: float = 0.0
    xtal_shape: str = "square"  # square | round | gauss | tophat
    fudge: float = 1.0
    interpolate: int = 2  # 2 = auto
    mosaic_spread: float = -1.0  # rad
    mosaic_domains: int = -1
    mosaic_seed: int = -12345678
    misset_seed: int | None = None  # None = -time(0) at start-up, like C
    # beam
    lambda0: float = 1.0e-10
    fluence: float = 125932015286227086360700780544.0
    flux: float = 0.0
    exposure: float = 1.0
    beamsize: float = 1e-4
    dispersion: float = 0.0
    dispsteps: int = -1
    hdivrange: float = -1.0
    vdivrange: float = -1.0
    hdivstep: float = -1.0
    vdivstep: float = -1.0
    hdivsteps: int = -1
    vdivsteps: int = -1
    round_div: bool = True
    sourcefile: str | None = None
    polarization: float = 0.0
    nopolar: bool = False
    # detector
    pixel_size: float = 0.1e-3
    fpixels: int = 0
    spixels: int = 0
    detsize_f: float = 102.4e-3
    detsize_s: float = 102.4e-3
    distance: float = 100.0e-3
    close_distance: float = NAN
    Xbeam: float = NAN
    Ybeam: float = NAN
    Xclose: float = NAN
    Yclose: float = NAN
    ORGX: float = NAN
    ORGY: float = NAN
    pivot: str = "beam"
    convention: str = "mosflm"
    fdet_vector: tuple = (0.0, 0.0, 1.0)
    sdet_vector: tuple = (0.0, -1.0, 0.0)
    odet_vector: tuple = (1.0, 0.0, 0.0)
    beam_vector: tuple = (1.0, 0.0, 0.0)
    polar_vector: tuple = (0.0, 0.0, 1.0)
    spindle_vector: tuple = (0.0, 0.0, 1.0)
    twotheta_axis: tuple = (0.0, 1.0, 0.0)
    twotheta: float = 0.0
    rotx: float = 0.0
    roty: float = 0.0
    rotz: float = 0.0
    curved_detector: bool = False
    curved_detector_c: bool = False  # as nanoBragg.c reads it: not as the last argument
    point_pixel: bool = False
    # sensor
    detector_thick: float = 0.0
    detector_mu: float = -1.0
    detector_thicksteps: int = -1
    detector_thickstep: float = -1.0
    # sampling
    oversample: int = -1
    oversample_thick: bool = False
    oversample_polar: bool = False
    oversample_omega: bool = False
    phi0: float = 0.0
    osc: float = -1.0
    phistep: float = -1.0
    phisteps: int = -1
    roi: list = field(default_factory=lambda: [-1, -1, -1, -1])  # xmin xmax ymin ymax
    dmin: float = 0.0
    # background
    water_size: float = 0.0
    # outputs
    floatfile: str = "floatimage.bin"
    intfile: str = "intimage.img"
    pgmfile: str = "image.pgm"
    noisefile: str = "noiseimage.img"
    write_pgm: bool = True
    calculate_noise: bool = True
    intfile_scale: float = 0.0
    pgm_scale: float = 0.0
    adc: float = 40.0
    # noise
    seed: int | None = None  # None = -time(0)
    seed_given: bool = False
    # tracing / console
    trace_pixel: tuple | None = None  # (slow, fast)
    printout: bool = False
    printout_pixel: tuple | None = None  # (fast, slow)
    progress: bool = True
    # SMV files read by the first pass (-img, -mask)
    imgfile: str | None = None
    maskfile: str | None = None
    mask: object = None  # numpy uint16 [slow, fast] once loaded
    # bookkeeping for warnings about surprising C readings
    pivot_set_by: str | None = None
    custom_set_by: str | None = None
    convention_set_by: str | None = None
    warnings: list = field(default_factory=list)
    # nanoBragg.c's own printed lines that depend on the flags as given: [(stage, line)]
    c_notes: list = field(default_factory=list)
    start_time: int = field(default_factory=lambda: int(time.time()))

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
