"""The model benchmark: paired timing alternates the two attention paths, and the script runs end to end."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "models.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_models", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_timing_alternates_the_paths_and_pairs_every_measurement():
    calls, state = [], {}
    result = _bench_module().paired(lambda: calls.append(state["explicit"]),
                                    lambda explicit: state.update(explicit=explicit), repeat=3, device="cpu")
    # a warm-up pair, then the order flips every pair so drift cannot favour one path
    assert calls == [False, True, True, False, False, True, True, False]
    assert set(result) == {"fused_s", "explicit_s", "ratio"} and all(v > 0 for v in result.values())


@pytest.mark.slow
def test_bench_script_prints_a_row_per_case():
    out = subprocess.run([sys.executable, str(BENCH), "--cases", "frame_transformer/tiny,temporal_unet/tiny",
                          "--frames", "16", "--repeat", "1", "--layer-frames", "16", "--device", "cpu"],
                         check=True, capture_output=True, text=True).stdout
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+/tiny)\s.*?(\d+\.\d+)x", out, re.M)}
    assert set(rows) == {"frame_transformer/tiny", "temporal_unet/tiny"}
    assert all(ratio > 0 for ratio in rows.values())
    assert re.search(r"^\s+16\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+x$", out, re.M)  # the attention layer alone


@pytest.mark.slow
def test_gpu_acceptance_script_runs_every_check_on_the_cpu(tmp_path):
    script = BENCH.parent / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script), "--work", str(tmp_path), "--device", "cpu", "--quick"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(r"^(PASS|FAIL) ", done.stdout, re.M)
    assert len(rows) > 20 and set(rows) == {"PASS"}
    table = (tmp_path / "figures.md").read_text()
    assert "separation RTF" in table and "explicit / fused time" in table
    shell = subprocess.run(["bash", "-n", str(BENCH.parent / "gpu_check.sh")], capture_output=True, text=True)
    assert shell.returncode == 0, shell.stderr


def _gpu_day_module():
    spec = importlib.util.spec_from_file_location("gpu_day", BENCH.parent / "gpu_day.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_day_sizes_every_gpu_preset_from_its_step():
    gpu_day = _gpu_day_module()
    rows = gpu_day.main(["--device", "cpu", "--quick", "--tflops", "1e-6"])
    assert [r["preset"] for r in rows] == list(gpu_day.PRESETS)
    assert [r["model"].split("/")[0] for r in rows] == ["frame_transformer", "bs_roformer", "mel_roformer"]
    for row in rows:
        assert row["tflop"] > 0 and row["seconds"] == pytest.approx(row["tflop"] * 1e12 / 1e6)
        assert row["steps_per_day"] == int(86400 / row["seconds"])
        assert row["days"] == pytest.approx(row["preset_steps"] / row["steps_per_day"])


def test_gpu_day_counts_every_accumulated_micro_batch():
    gpu_day = _gpu_day_module()
    config = gpu_day.preset_config("gpu_mel_roformer", quick=True)
    assert config.train.grad_accum == 2
    once = gpu_day.step_flops(config.replace(train=config.train.replace(grad_accum=1)))
    assert gpu_day.step_flops(config) == 2 * once
    doubled = config.replace(train=config.train.replace(grad_accum=1, batch_size=2 * config.train.batch_size))
    assert gpu_day.step_flops(doubled) == pytest.approx(2 * once, rel=1e-6)


def test_oracle_mask_beats_the_mixture_and_loses_with_fewer_bins(tiny_dataset):
    spec = importlib.util.spec_from_file_location("oracle", BENCH.parent / "oracle.py")
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    scores = oracle.main([str(tiny_dataset / "valid"), "--max-bins", "0,8,1", "--n-fft", "256", "--hop", "128"])
    assert set(scores) == {"input", "max_bin all", "max_bin 8", "max_bin 1"}
    full, eight, one, given = (scores[k][0] for k in ("max_bin all", "max_bin 8", "max_bin 1", "input"))
    assert full > given + 6 and full > eight > one  # one bin's mask everywhere is little better than a gain


def test_gpu_day_shrinks_a_step_to_one_micro_batch():
    config = _gpu_day_module().preset_config("gpu_mel_roformer", False, batch_size=1, frames=64)
    assert (config.train.batch_size, config.train.grad_accum, config.voxaug.cropsize) == (1, 1, 64)
    assert config.model.preset == "default"  # the preset's model, at full size
