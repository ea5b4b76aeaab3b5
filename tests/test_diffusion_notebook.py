"""notebooks/30_diffusion.ipynb executed headless with its smoke parameter file."""
import json
import math
from pathlib import Path

from ftlib import cli

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "30_diffusion.ipynb"
PARAMS = ROOT / "notebooks" / "params" / "30_diffusion"


def test_diffusion_notebook_smoke_run(tmp_path):
    assert cli.main(["run", str(NOTEBOOK), "-f", str(PARAMS / "smoke.yaml"), "--runs-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["smoke"] is True and metrics["task"] == "both"
    for key in ("sdr_vocals_ddim_2", "sdr_vocals_ddim_5", "sdr_vocals_ddpm_10", "sdr_vocals_mask_model",
                "input_sdr_vocals", "denoiser_valid_loss", "idea_final_loss"):
        assert math.isfinite(metrics[key]), key
    assert set(metrics["ddim_gap_to_ddpm_db"]) == {"2", "5"}
    assert {p.name for p in (run / "figures").iterdir()} == {
        "separation_losses.png", "separation_denoising.png", "separation_crop.png", "sdr_vs_steps.png",
        "idea_losses.png", "idea_denoising.png", "idea_samples.png"}
    assert {p.name for p in (run / "audio").iterdir()} == {
        "mixture.wav", "diffusion_vocals.wav", "mask_model_vocals.wav", "true_vocals.wav",
        "idea_sample_0.wav", "idea_sample_1.wav"}
    for name in ("denoiser", "mask", "idea"):
        assert (run / name / "metrics.jsonl").is_file() and (run / name / "checkpoints").is_dir()
    assert (run / "30_diffusion.ipynb").is_file() and (run / "config.json").is_file()


def test_parameter_files_name_notebook_parameters():
    import ast

    import nbformat
    import yaml

    cell = next(c for c in nbformat.read(NOTEBOOK, 4).cells if "parameters" in c.metadata.get("tags", []))
    names = {node.targets[0].id for node in ast.parse(cell.source).body}
    for path in PARAMS.glob("*.yaml"):
        assert set(yaml.safe_load(path.read_text())) <= names, path.name
