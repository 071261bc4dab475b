"""`make gpu-check` (nanobragg_cli.gpu_check): refuses cleanly without CUDA, reads its reports."""

import json

import pytest
import torch

from nanobragg_cli import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_refuses_in_one_line_and_writes_nothing(tmp_path, capsys):
    assert gpu_check.main([str(tmp_path / "out")]) == 9
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nanobragg: error: gpu-check:")
    assert not (tmp_path / "out").exists()


def test_record_reads_junit_counts_and_bench_medians(tmp_path):
    junit = tmp_path / "t.xml"
    junit.write_text('<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1"/>'
                     '</testsuites>')
    assert gpu_check._test_counts(junit) == dict(tests=3, failures=1, errors=0, skipped=1)
    bench = tmp_path / "b.json"
    bench.write_text(json.dumps({"benchmarks": [{"id": "B1", "runs": {
        "ours-float64": {"median_s": 1.5, "evals_per_s": 2e6}}}]}))
    assert gpu_check._bench_summary(bench) == [
        {"id": "B1", "program": "ours-float64", "median_s": 1.5, "evals_per_s": 2e6}]
    assert gpu_check._bench_summary(tmp_path / "missing.json") == []
