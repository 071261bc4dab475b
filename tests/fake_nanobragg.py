"""A stand-in for a nanoBragg binary, for the --c-bin harness tests (tests/test_cbin_harness.py).

The tests install it as an executable with a ``#!<sys.executable>`` line. It is not a simulator:

- **replay** (default): for a command line whose flags (output, progress and pixel flags aside)
  equal the ``args`` of a case of the corpus ``$FAKE_NB_CORPUS``, it writes that case's
  float.bin / int.img / noise.img / image.pgm under the output names given, and prints its
  stdout.txt, or with ``-trace_pixel S F`` the case's ``trace_S_F.log`` (exit 3 when the corpus
  has no trace of that pixel). These are nanoBragg.c's own outputs.
- ``FAKE_NB_NO_TRACE=1``: a binary that does not know ``-trace_pixel`` (ignored), but prints the
  ``-printout_pixel F S`` block; its values are those of nanoBragg.c's trace of that pixel (the
  last sub-pixel's), printed with nanoBragg.c's printf formats.
- ``FAKE_NB_RENDER=1``: a command line the corpus does not hold is rendered by ``nanobragg
  --c-parity`` (TRACE_PY lines renamed TRACE_C), so that only the perturbation below diverges:
  used to test --shrink, which needs outputs for every command line it tries.
- ``FAKE_NB_PERTURB``: ``image:S:F:FACTOR`` multiplies float pixel (S, F), ``image:S0-S1:F0-F1:
  FACTOR`` a block of pixels (replay only);
  ``trace:KEY:FACTOR`` multiplies every number of the TRACE_C lines of KEY. With
  ``FAKE_NB_PERTURB_IF=-flag`` the perturbation applies only when that flag is in the command
  line.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

OUTPUTS = {"-floatfile": "float", "-intfile": "int", "-noisefile": "noise", "-pgmfile": "pgm"}
SWITCHES = ("-nopgm", "-noprogress", "-progress")
FILES = {"float": "float.bin", "int": "int.img", "noise": "noise.img", "pgm": "image.pgm"}


def split(argv):
    flags, outputs, trace, printout, i = [], {}, None, None, 0
    while i < len(argv):
        tok = argv[i]
        if tok in OUTPUTS:
            outputs[OUTPUTS[tok]] = argv[i + 1]
            i += 2
        elif tok in SWITCHES:
            i += 1
        elif tok == "-trace_pixel":
            trace = (int(argv[i + 1]), int(argv[i + 2]))
            i += 3
        elif tok == "-printout_pixel":
            printout = (int(argv[i + 2]), int(argv[i + 1]))  # given fast, slow
            i += 3
        else:
            flags.append(tok)
            i += 1
    return flags, outputs, trace, printout


def find_case(corpus, flags):
    """The corpus case whose args are ``flags`` (-nonoise, which only skips a file, aside)."""
    want = [t for t in flags if t != "-nonoise"]
    for meta_path in sorted(Path(corpus, "cases").glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        args = [t for t in meta.get("args", []) if t != "-nonoise"]
        if args == want and (meta_path.parent / "float.bin").exists():
            return meta_path.parent, meta
    return None, None


def last_values(log_text):
    vals = {}
    for line in log_text.splitlines():
        m = re.match(r"TRACE_C: (\S+) (.*)$", line)
        if m:
            try:
                vals[m.group(1)] = [float(x) for x in m.group(2).split()]
            except ValueError:
                pass
    return vals


def printout_block(log_text, pixel):
    v = last_values(log_text)
    s, f = pixel
    scat, pos = v["scattering_vec_A_inv"], v["pixel_pos_meters"]
    stol = 0.5 * math.sqrt(sum(x * x for x in scat))
    twotheta = math.atan2(math.sqrt(pos[1] ** 2 + pos[2] ** 2), pos[0])
    nominal = math.sin(twotheta / 2.0) / v["lambda_angstroms"][0]
    I, steps = v["I_before_scaling"][0], v["steps"][0]
    a, b, c = v["rot_a_angstroms"], v["rot_b_angstroms"], v["rot_c_angstroms"]
    lines = ["%4d %4d : stol = %g or %g" % (f, s, stol, nominal), "at %g %g %g" % tuple(pos),
             "hkl= %f %f %f  hkl0= %d %d %d" % (*v["hkl_frac"], *(int(x) for x in v["hkl_rounded"])),
             " F_cell=%g  F_latt=%g   I = %g" % (v["F_cell"][0], v["F_latt"][0], I),
             "I/steps %15.10g" % (I / steps), "polar   %15.10g" % v["polar"][0],
             "omega   %15.10g" % v["omega_pixel"][0],
             "capfrac %15.10g" % v["capture_fraction"][0],
             "pixel   %15.10g" % v["floatimage_accumulated"][0],
             "real-space cell vectors (Angstrom):", "     %-10s  %-10s  %-10s" % ("a", "b", "c")]
    for k, name in enumerate("XYZ"):
        lines.append("%s: %11.8f %11.8f %11.8f" % (name, a[k], b[k], c[k]))
    return lines


def perturb_trace(text, key, factor):
    out = []
    for line in text.splitlines():
        m = re.match(rf"(TRACE_C(?:_PHI)?: {re.escape(key)}) (.*)$", line)
        if m:
            nums = ["%.15g" % (float(x) * factor) if re.match(r"^[-+]?[\d.]", x) else x
                    for x in m.group(2).split()]
            line = m.group(1) + " " + " ".join(nums)
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv):
    env = os.environ
    flags, outputs, trace, printout = split(argv)
    no_trace = env.get("FAKE_NB_NO_TRACE") == "1"
    if no_trace:
        trace = None
    perturb = env.get("FAKE_NB_PERTURB", "")
    cond = env.get("FAKE_NB_PERTURB_IF")
    if cond and cond not in flags:
        perturb = ""
    case, meta = find_case(env["FAKE_NB_CORPUS"], flags)
    if case is not None:
        files = {k: (case / name).read_bytes() for k, name in FILES.items()
                 if (case / name).exists()}
        stdout = (case / "stdout.txt").read_text()
        if trace is not None:
            log = case / f"trace_{trace[0]}_{trace[1]}.log"
            if not log.exists():
                print(f"fake_nanobragg: no trace of pixel {trace[0]} {trace[1]} in {case}",
                      file=sys.stderr)
                return 3
            stdout = log.read_text()
        if printout is not None and no_trace:
            log = case / f"trace_{printout[0]}_{printout[1]}.log"
            if not log.exists():
                print(f"fake_nanobragg: no values of pixel {printout} in {case}", file=sys.stderr)
                return 3
            lines = stdout.splitlines()
            at = next((i for i, ln in enumerate(lines) if ln.startswith("solid angle")),
                      len(lines))
            lines[at:at] = printout_block(log.read_text(), printout)
            stdout = "\n".join(lines) + "\n"
        if perturb.startswith("image:"):
            import numpy as np
            _, s, f, factor = perturb.split(":")
            (s0, s1), (f0, f1) = [(int(t.split("-")[0]), int(t.split("-")[-1])) for t in (s, f)]
            img = np.frombuffer(files["float"], dtype="<f4").reshape(meta["shape_slow_fast"]).copy()
            img[s0:s1 + 1, f0:f1 + 1] *= float(factor)
            files["float"] = img.astype("<f4").tobytes()
        for kind, name in outputs.items():
            if kind in files:
                Path(name).write_bytes(files[kind])
    elif env.get("FAKE_NB_RENDER") == "1":
        extra = ["-trace_pixel", str(trace[0]), str(trace[1])] if trace else []
        for kind, name in outputs.items():
            extra += [{v: k for k, v in OUTPUTS.items()}[kind], name]
        proc = subprocess.run([sys.executable, "-m", "nanobragg_cli", *flags, *extra, "-nopgm",
                               "-noprogress", "--c-parity"], capture_output=True, text=True)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        stdout = proc.stdout.replace("TRACE_PY", "TRACE_C")
    else:
        print("fake_nanobragg: this command line is not in the corpus", file=sys.stderr)
        return 2
    if perturb.startswith("trace:"):
        _, key, factor = perturb.split(":")
        stdout = perturb_trace(stdout, key, float(factor))
    sys.stdout.write(stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
