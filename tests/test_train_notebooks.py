"""notebooks/10_pretrain and 20_voxaug_finetune executed headless in smoke mode, 20 starting from 10's checkpoint."""
import json
import math
from pathlib import Path

from ftlib import checkpoint, cli, runs
from ftlib.train import history

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def _run(name, runs_dir, *params):
    args = ["run", str(NOTEBOOKS / name), "--preset", "smoke", "--runs-dir", str(runs_dir)]
    for key, value in params:
        args += ["-p", key, value]
    assert cli.main(args) == 0
    run = max(p for p in runs_dir.iterdir() if name.split(".")[0] in p.name)  # the newest
    return run, json.loads((run / "metrics.json").read_text())


def test_pretrain_then_finetune_notebooks(tmp_path):
    pre, metrics = _run("10_pretrain.ipynb", tmp_path / "runs")
    assert metrics["smoke"] is True and math.isfinite(metrics["valid_masked_l1"])
    assert {p.name for p in (pre / "figures").iterdir()} == {"training_curves.png", "reconstruction.png"}
    best = pre / "checkpoints" / "best"
    assert checkpoint.read_header(best)["model"] == "frame_transformer" and (pre / "recipe.json").is_file()

    run, metrics = _run("20_voxaug_finetune.ipynb", tmp_path / "runs", ("pretrained", str(best)),
                        ("finetune_method", "llrd"))
    assert metrics["pretrained"] == str(best) and not (run / "pretrain").exists()
    for name in ("finetuned", "scratch"):
        assert math.isfinite(metrics[f"valid_loss_{name}"]) and math.isfinite(metrics[f"sdr_vocals_{name}"])
        assert json.loads((run / name / "context_length.json").read_text())[0]["cropsize"] == 16
        assert (run / name / "checkpoints" / "best" / "model.safetensors").is_file()
    assert json.loads((run / "finetuned" / "recipe.json").read_text())["init_from"] == str(best)
    assert {p.name for p in (run / "figures").iterdir()} == {"training_curves.png", "context_length.png", "sdr.png"}
    assert len(list((run / "audio").glob("*.wav"))) == 2

    # another finetuning method later, against the same from-scratch curve, without retraining it
    other, metrics = _run("20_voxaug_finetune.ipynb", tmp_path / "runs", ("pretrained", str(best)),
                          ("compare_scratch", "false"), ("scratch_run", str(run)))
    assert not (other / "scratch").exists() and "sdr_vocals_scratch" not in metrics
    scratch_log, finetuned_log = runs.read_log(run / "scratch"), runs.read_log(other / "finetuned")
    reference = history.validation_losses(scratch_log)[-1][1]
    assert metrics["valid_loss_scratch"] == reference
    assert metrics["steps_to_scratch_loss_finetuned"] == history.steps_to_reach(finetuned_log, reference)
