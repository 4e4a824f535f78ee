"""The C++ library on its own: the example program builds and runs without Python, and the
self-test runs clean under AddressSanitizer and UBSan."""
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import confroute

pytestmark = pytest.mark.system  # builds the C++ library with CMake and ASan
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tool(name):
    """A build tool on PATH or beside this Python: the test extra installs cmake and ninja into
    the environment, whose bin/ need not be on PATH. Missing cmake fails, it does not skip."""
    return shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))


def build(tmp_path, *flags):
    cmake, ninja = _tool("cmake"), _tool("ninja")
    assert cmake, "cmake not found: it comes with the test extra (pip install '.[test]')"
    build_dir = tmp_path / "build"
    gen = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
    subprocess.run([cmake, "-S", str(ROOT), "-B", str(build_dir), "-DCONFROUTE_PYTHON=OFF", *gen, *flags],
                   check=True, capture_output=True)
    subprocess.run([cmake, "--build", str(build_dir), "-j", "2"], check=True, capture_output=True)
    return build_dir


def test_example_and_selftest_under_asan(tmp_path):
    build_dir = build(tmp_path, "-DCONFROUTE_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Debug")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    env.pop("LD_PRELOAD", None)
    selftest = subprocess.run([str(build_dir / "core_selftest")], capture_output=True, text=True, env=env)
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    assert "core_selftest: ok" in selftest.stdout
    example = subprocess.run([str(build_dir / "se_example")], capture_output=True, text=True, env=env)
    assert example.returncode == 0, example.stderr
    assert "asan=on" in example.stdout
    # The C++ program's numbers are the Python module's numbers for the same batch.
    lines = [l for l in example.stdout.splitlines() if l.startswith("query")]
    emb = np.array([[1, 0, 0], [0.99, 0.1, 0], [0.98, 0, 0.1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    lp = np.array([-0.1, -0.2, -0.3, -0.1, -0.2, -0.2, -1.0, -2.0, -0.5, -0.5, -3.0, -1.0], np.float32)
    r = confroute.confidence_batch(lp, np.arange(0, 13, 2), emb, [0, 3, 6], 0.9)
    for b, line in enumerate(lines):
        fields = dict(kv.split("=") for kv in line.split(": ")[1].split())
        assert int(fields["clusters"]) == r.n_clusters[b]
        assert float(fields["se_kuhn"]) == pytest.approx(r.se_kuhn[b], abs=1e-6)
        assert float(fields["se_weighted"]) == pytest.approx(r.se_weighted[b], abs=1e-6)
