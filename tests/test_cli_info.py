import json
import os
import subprocess
import sys


def test_info_runs_the_worked_example(tmp_path):
    # an empty model home: with the models pulled, `info` probes each one in a child process
    # (llama_probe), which is the `models` test in test_llama_probe.py, not this fast one
    env = dict(os.environ, CONFROUTE_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "confroute.cli", "info", "--json"],
                         capture_output=True, text=True, check=True, env=env)
    info = json.loads(out.stdout)
    assert info["example_n_clusters"] == [1, 3]
    assert info["example_se_kuhn"][0] == 0.0 and info["example_se_kuhn"][1] > 1.0
    assert "native=" in info["build"]


def test_no_command_prints_help():
    out = subprocess.run([sys.executable, "-m", "confroute.cli"], capture_output=True, text=True)
    assert out.returncode == 2 and "COMMAND" in out.stdout
