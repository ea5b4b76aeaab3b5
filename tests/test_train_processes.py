"""Training in real processes: two-process DDP over gloo (torchrun and the notebook launcher), and a run killed mid-epoch."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ftlib import checkpoint
from ftlib import recipes
from ftlib.train import latest_checkpoint

pytestmark = pytest.mark.slow

# gloo on the CPU also on GPU machines (NCCL cannot put two processes on one GPU)
TINY = ["--preset", "tiny", "--set", 'model.overrides={"dropout": 0}', "--set", "evaluation.context_cropsizes=[]",
        "--set", "evaluation.songs=0", "--set", "train.device=cpu"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _train(*args, timeout=240):
    done = subprocess.run([sys.executable, "-m", "ftlib.train", *TINY, *args], env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return checkpoint.load(Path(run_dir) / "checkpoints" / f"step-{step:07d}").state_dict()


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    common = ["--set", "train.steps=3", "--set", "train.warmup_steps=1"]
    _train(*common, "--set", "train.batch_size=2", "--run-dir", str(tmp_path / "one"))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ftlib.train",
                           *TINY, *common, "--set", "train.batch_size=1", "--run-dir", str(tmp_path / "two")],
                          env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("one", "two")}
    steps = {name: [r for r in log if "loss" in r] for name, log in logs.items()}
    assert [r["batch"] for r in steps["two"]] == [2, 2, 2]  # one line per step: rank 0 alone logs
    for a, b in zip(steps["one"], steps["two"]):  # same losses and gradients: the ranks average their gradients
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4) and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    one, two = _weights(tmp_path / "one", 3), _weights(tmp_path / "two", 3)
    assert not any(name.startswith("module.") for name in two)
    # Adam turns float noise in near-zero gradients into full-size steps, so compare the whole update
    init = recipes.separation.build_model(recipes.config_from_run(tmp_path / "one")).state_dict()
    moved = sum(float((one[k] - init[k]).norm() ** 2) for k in one) ** 0.5
    apart = sum(float((one[k] - two[k]).norm() ** 2) for k in one) ** 0.5
    assert moved > 0 and apart < 0.01 * moved, (apart, moved)


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    # 400 scheduled steps, 32 per epoch: checkpoints every 3 steps; both runs stop at step 12
    common = ["--set", "train.steps=400", "--set", "train.checkpoint_every=3", "--set", "voxaug.items_per_epoch=64"]
    _train(*common, "--stop-after", "12", "--run-dir", str(tmp_path / "straight"))

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ftlib.train", *TINY, *common, "--run-dir", str(run_dir)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while latest_checkpoint(run_dir) is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(run_dir)
    assert killed_at is not None, "the run never wrote a checkpoint"
    step = checkpoint.load_state(killed_at)["step"]
    assert 3 <= step < 12 and step % 32 != 0  # killed mid-epoch, before the end of the comparison
    _train(*common, "--stop-after", str(12 - step), "--run-dir", str(run_dir))
    straight, resumed = _weights(tmp_path / "straight", 12), _weights(run_dir, 12)
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


def test_notebook_launcher_trains_in_two_processes_and_returns_the_checkpointed_model(tmp_path):
    script = ("import sys, torch; from ftlib import recipes; "
              "cfg = recipes.separation.Config.preset('tiny', train={'steps': 3, 'batch_size': 1, 'device': 'cpu'}, "
              "evaluation={'context_cropsizes': ()}); "
              "model = recipes.run(cfg, sys.argv[1], num_processes=2); "
              "torch.save(model.state_dict(), sys.argv[2])")
    run_dir, returned = tmp_path / "run", tmp_path / "returned.pt"
    done = subprocess.run([sys.executable, "-c", script, str(run_dir), str(returned)], env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["batch"] for r in steps if "loss" in r] == [2, 2, 2]  # two processes of batch 1, rank 0 logs
    best = checkpoint.load(run_dir / "checkpoints" / "best").state_dict()
    assert not any(name.startswith("module.") for name in best)
    for name, value in torch.load(returned, weights_only=True).items():
        assert torch.equal(value, best[name]), name


def test_processes_that_do_not_share_the_run_folder_stop_with_an_error(tmp_path):
    script = tmp_path / "apart.py"
    script.write_text("import os, sys\nfrom ftlib import recipes\n"
                      "cfg = recipes.separation.Config.preset('tiny', train={'steps': 2, 'batch_size': 1, 'device': 'cpu'})\n"
                      "recipes.separation.train(cfg, os.path.join(sys.argv[1], 'rank' + os.environ['RANK']))\n")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script),
                           str(tmp_path)], env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert "processes [1] cannot see the run folder" in done.stderr, done.stderr[-3000:]
