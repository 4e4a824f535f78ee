"""`confroute label --ray`: the SE label job on a local Ray instance with the real SmolLM2 and
Qwen, against the single-process job; the block store; the faults (a replica killed mid-block,
the driver killed, a model missing on a worker); Ray missing. Small on purpose (CI has 2
cores): 8 prompts, 2 samples of 4 tokens. The tests that need Ray skip without it (an extra)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from confroute import cli
from confroute.runtime.blocks import BlockStore

QA = [("What is the capital of France?", "Paris"), ("How many legs does a spider have?", "8"),
      ("What color is the sky on a clear day?", "blue"), ("What is 2 + 3?", "5"),
      ("Who wrote Hamlet?", "Shakespeare"), ("What is the largest planet?", "Jupiter"),
      ("What gas do plants take in?", "carbon dioxide"), ("What is frozen water called?", "ice")]
JOB = ["--n", "2", "--max-tokens", "4", "--threads", "1", "--no-progress"]
TIMEOUT = 600  # seconds: the longest any subprocess of these tests may take


def main(argv):
    saved = cli.COMMANDS
    cli.COMMANDS = {"label": saved["label"]}
    try:
        return cli.main(argv)
    finally:
        cli.COMMANDS = saved


def untimed(path) -> bytes:
    """A label file's bytes with each row's wall time blanked: the one field that differs
    between two runs of the same job, with or without Ray."""
    with open(path, "rb") as f:
        return re.sub(rb'"seconds": [0-9.e-]+', b'"seconds": _', f.read())


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA))
    return str(path)


@pytest.fixture(scope="module")
def reference(prompts, tmp_path_factory):
    """The single-process job's rows of the same prompts and options."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    assert main(["label", "--prompts", prompts, "--out", str(out)] + JOB) == 0
    return untimed(out)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (2 CPUs, as CI has): the in-process jobs use
    it, and the subprocess jobs join it by its address."""
    ray = pytest.importorskip("ray")
    import logging

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=256 * 2**20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# ------------------------------------------------------------------ the store (pure logic)

def test_block_store_commits_once_and_resumes(tmp_path):
    store = BlockStore(tmp_path / "b")
    assert store.committed() == {}
    store.commit([0, 1], [{"id": 0}, {"id": 1}])
    store.commit([4, 5], [{"id": 4}, {"id": 5}])
    # a block renamed into place but killed before its manifest line: not committed
    (tmp_path / "b" / "000000002-000000003.jsonl").write_text('{"id": 2}\n{"id": 3}\n')
    with open(store.manifest, "a") as f:
        f.write('{"block": "000000006')  # a torn manifest line, cut on resume
    assert store.committed() == {0: {"id": 0}, 1: {"id": 1}, 4: {"id": 4}, 5: {"id": 5}}
    assert open(store.manifest).read().endswith("}\n")
    store.commit([2, 3], [{"id": 2}, {"id": 3}])  # redone: overwrites the stray file
    assert sorted(store.committed()) == [0, 1, 2, 3, 4, 5]
    # a committed block edited afterwards is refused, not read
    (tmp_path / "b" / "000000004-000000005.jsonl").write_text('{"id": 4}\n{"id": 9}\n')
    with pytest.raises(ValueError, match="checksum"):
        store.committed()
    store.remove()
    assert not (tmp_path / "b").exists()


def test_block_store_refuses_a_key_committed_twice(tmp_path):
    store = BlockStore(tmp_path / "b")
    store.commit([0, 1], [{"id": 0}, {"id": 1}])
    store.commit([1, 2], [{"id": 1}, {"id": 2}])
    with pytest.raises(ValueError, match="key 1 was committed twice"):
        store.committed()


def test_ray_missing_names_the_extra(prompts, tmp_path):
    script = ("import sys; sys.modules['ray'] = None\n"  # `import ray` now raises ImportError
              "from confroute import cli\n"
              f"sys.exit(cli.main(['label', '--prompts', {prompts!r}, '--out', "
              f"{str(tmp_path / 'o.jsonl')!r}, '--ray']))")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 2, p.stderr
    assert 'pip install "confroute[ray]"' in p.stderr
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------ on Ray, real models

@pytest.mark.system
@pytest.mark.models
def test_label_on_ray_gives_the_single_process_rows(ray_local, prompts, reference, tmp_path,
                                                    capsys):
    out = tmp_path / "ray.jsonl"
    argv = ["label", "--prompts", prompts, "--out", str(out), "--ray", "--replicas", "2",
            "--block-size", "3"] + JOB[:-1]  # with the progress bar
    assert main(argv) == 0
    assert untimed(out) == reference
    assert not os.path.exists(str(out) + ".blocks")  # the blocks are folded into the file
    err = capsys.readouterr().err
    bars = [line for line in re.split(r"[\r\n]", err) if line.startswith("labelling")]
    # one bar over both replicas, with the elapsed time, the ETA and the rate
    assert re.search(r"8/8 \[[\d:]+<[\d:]+, +[\d.]+(prompt/s|s/prompt)\]", bars[-1]), bars
    # a rerun finds every row done
    assert main(argv) == 0 and untimed(out) == reference
    assert "0 new rows (8 already there)" in capsys.readouterr().out


@pytest.mark.system
@pytest.mark.models
def test_replica_killed_mid_block_has_its_block_redone(ray_local, prompts, reference,
                                                       tmp_path, monkeypatch, capsys):
    from confroute.runtime import distributed

    events, pids = [], {}

    class KillOne(distributed.RayJob):  # kills a replica's process once it is inside a block
        def __init__(self, *a, **kw):
            super().__init__(*a, on_event=self.event, **kw)

        def event(self, kind, data):
            events.append((kind, data))
            if kind == "ready":
                pids[data["replica"]] = data["pid"]
            if kind == "item" and 0 < data["done"] < data["of"] - 1 and \
                    not any(k == "killed" for k, _ in events):
                os.kill(pids[data["replica"]], signal.SIGKILL)
                events.append(("killed", data))

    monkeypatch.setattr(distributed, "RayJob", KillOne)
    out = tmp_path / "killed.jsonl"
    assert main(["label", "--prompts", prompts, "--out", str(out), "--ray", "--replicas", "2",
                 "--block-size", "4"] + JOB) == 0
    killed = next(d for k, d in events if k == "killed")
    lost = [d for k, d in events if k == "lost"]
    assert len(lost) == 1 and lost[0]["block"] == killed["block"]
    redo = [d for k, d in events if k == "dispatch" and d["block"] == killed["block"]]
    assert [d["attempt"] for d in redo] == [1, 2] and redo[1]["replica"] != killed["replica"]
    assert untimed(out) == reference  # nothing lost, nothing twice
    assert "1 replica(s) lost and replaced" in capsys.readouterr().out


@pytest.mark.system
@pytest.mark.models
def test_driver_killed_then_rerun_resumes_from_committed_blocks(ray_local, prompts, reference,
                                                                tmp_path):
    out = tmp_path / "driver.jsonl"
    manifest = tmp_path / "driver.jsonl.blocks" / "manifest.jsonl"
    argv = [sys.executable, "-m", "confroute.cli", "label", "--prompts", prompts, "--out",
            str(out), "--replicas", "1", "--block-size", "2"] + JOB
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    driver = subprocess.Popen(argv + ["--ray", ray_local], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT
    try:  # kill the driver once it has committed one or two of its four blocks
        while not (manifest.exists() and manifest.read_text().count("\n") >= 1):
            assert driver.poll() is None, driver.stdout.read().decode()
            assert time.monotonic() < deadline, "the driver committed no block in time"
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.wait(TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
    committed = manifest.read_text().count("\n")
    assert 1 <= committed <= 3 and not out.exists()
    # the rerun, on a Ray instance of its own this time, resumes from the committed blocks
    p = subprocess.run(argv + ["--ray"], env=env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert f"{2 * committed} rows came from the blocks an earlier run committed" in p.stdout
    assert f"{8 - 2 * committed} new rows (0 already there)" in p.stdout
    assert untimed(out) == reference


@pytest.mark.system
def test_model_missing_on_a_worker_is_an_error_naming_it(ray_local, prompts, tmp_path, capsys):
    out = tmp_path / "missing.jsonl"
    assert main(["label", "--prompts", prompts, "--out", str(out), "--ray", "--replicas", "1",
                 "--edge-model", str(tmp_path / "absent.gguf")] + JOB) == 2
    err = capsys.readouterr().err
    assert re.search(r"replica 1 \(pid \d+ on .+\) could not load its models: ValueError: "
                     r"model file .*absent\.gguf' does not exist", err), err
    assert not out.exists()


@pytest.mark.system
def test_model_store_empty_on_a_worker_is_an_error_naming_it(ray_local, prompts, tmp_path):
    from confroute.cli import label
    from confroute.runtime.distributed import RayJob
    from confroute.runtime.ray_cluster import RayOptions

    args = _parse(["label", "--prompts", prompts, "--out", "x"] + JOB)
    empty = {"CONFROUTE_HOME": str(tmp_path / "empty"), "CONFROUTE_OFFLINE": "1"}
    with pytest.raises(ValueError, match=r"replica 1 \(pid \d+ on .+\) could not load its "
                                         r"models: ModelError: .*confroute models pull"):
        with RayJob(label._LabelReplica(args, label._Job(args)),
                    RayOptions(replicas=1, env=empty)):
            pass


def _parse(argv):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    from confroute.cli import label

    label.add_arguments(sub.add_parser("label"))
    return parser.parse_args(argv)


# ------------------------------------------------------------------ eval build --ray

@pytest.mark.system
@pytest.mark.models
@pytest.mark.data
def test_eval_build_on_ray_gives_the_single_process_table(ray_local, data_dir, tmp_path,
                                                          capsys):
    saved = cli.COMMANDS
    cli.COMMANDS = {"eval": saved["eval"]}
    try:
        def build(name, *extra):
            return cli.main(["eval", "build", "--benchmark", "gsm8k", "--data", str(data_dir),
                             "--limit", "3", "--max-tokens", "4", "--no-progress",
                             "--checkpoint", str(tmp_path / f"{name}.ckpt"),
                             "--out", str(tmp_path / f"{name}.csv"), *extra])

        assert build("single") == 0
        assert build("ray", "--ray", "--replicas", "2", "--block-size", "2") == 0
        for ext in ("csv", "ckpt"):  # the same table, and the same checkpoint line by line
            assert untimed(tmp_path / f"ray.{ext}") == untimed(tmp_path / f"single.{ext}")
        assert not (tmp_path / "ray.ckpt.blocks").exists()
        capsys.readouterr()
        assert build("ray", "--ray", "--replicas", "1") == 0  # all done: a rerun asks nothing
        assert untimed(tmp_path / "ray.ckpt") == untimed(tmp_path / "single.ckpt")
    finally:
        cli.COMMANDS = saved
