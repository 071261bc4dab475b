"""Small helpers for the records we write (reports, bundles, manifests): strict JSON and hashes."""

import hashlib
import math


def json_safe(x):
    """``x`` with non-finite floats as the strings "nan", "inf", "-inf" (strict JSON), recursively
    through dicts, lists and tuples."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def sha256_file(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
