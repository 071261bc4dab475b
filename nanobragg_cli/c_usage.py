"""What ``nanobragg`` prints with no crystal and no structure factors: nanoBragg.c's usage.

nanoBragg.c, run without arguments, prints its banner, an error (no newline after it), a usage
line and one line per option (``\\t-flag<padding>\\t<text>``), all on stdout, and exits 9. We print
the same lines in the same order and layout; the option texts are this tool's own (from the flag
table, :data:`nanobragg_cli.flags.FLAGS`).
"""

from .c_stdout import BANNER

# nanoBragg.c's usage lists these flags (a few with an example value), in this order
USAGE_ORDER = (
    "-mat filename.mat", "-hkl filename.hkl", "-misset 10 20 30", "-misset random", "-cell", "-default_F", "-distance", "-detsize", "-detpixels",
    "-pixel", "-img", "-mask", "-detector_absorb", "-detector_thick", "-detector_thicksteps",
    "-Xbeam", "-Ybeam", "-mosflm", "-xds", "-ORGX", "-twotheta", "-N", "-xtalsize",
    "-square_xtal", "-round_xtal", "-gauss_xtal", "-tophat_spots", "-oversample",
    "-oversample_thick", "-oversample_polar", "-oversample_omega", "-lambda", "-mosaic",
    "-mosaic_domains", "-dispersion", "-dispsteps", "-hdivrange", "-vdivrange", "-hdivstep",
    "-vdivstep", "-square_div", "-phi", "-osc", "-phisteps", "-water", "-floatfile", "-intfile",
    "-scale", "-adc", "-polar", "-noisefile", "-pgmfile", "-pgmscale", "-nopgm", "-roi",
    "-printout", "-seed", "-mosaic_seed", "-misset_seed", "-fluence", "-flux", "-beamsize",
    "-exposure", "-nonoise", "-noprogress", "-nopolar", "-nointerpolate", "-interpolate",
    "-point_pixel", "-curved_det", "-fdet_vector", "-sdet_vector", "-odet_vector",
    "-beam_vector", "-polar_vector", "-spindle_axis", "-pix0_vector",
)
NO_INPUT = "ERROR: no hkl file and no dump file to read."
USAGE = "usage: nanoBragg -mat auto.mat -hkl Fs.hkl"


def usage_lines(dump_exists: bool = False) -> list:
    """nanoBragg.c's stdout for a run without crystal or structure factors (its ERROR line only
    when no Fdump cache exists, as in C)."""
    from .flags import find_flag
    lines = [BANNER, (USAGE if dump_exists else NO_INPUT + USAGE), "options:"]
    for name in USAGE_ORDER:
        flag = find_flag(name.split()[0])
        text = flag.help if flag is not None else ""
        if flag is not None and flag.unit and flag.unit not in ("file", ""):
            text += f" ({flag.unit})"
        lines.append("\t%-17s\t%s" % (name, text))
    return lines
