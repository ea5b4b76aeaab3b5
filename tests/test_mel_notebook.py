"""notebooks/40_mel_expansion.ipynb executed headless with its smoke parameters."""
import json
import math
from pathlib import Path

import soundfile as sf

from ftlib import cli

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "40_mel_expansion.ipynb"


def test_mel_expansion_notebook_smoke_run(tmp_path):
    assert cli.main(["run", str(NOTEBOOK), "--preset", "smoke", "--runs-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["smoke"] is True and metrics["steps"] == 4
    for key in ("final_loss", "valid_l1", "free_running_l1", "length_error"):
        assert math.isfinite(metrics[key]), key
    assert [row["fold"] for row in metrics["sweep"]] == [8, 16, 32]
    assert all(math.isfinite(row["valid_l1"]) and math.isfinite(row["free_running_l1"]) for row in metrics["sweep"])
    assert {p.name for p in (run / "figures").iterdir()} == {"training_curves.png", "reconstructions.png",
                                                             "generations.png", "fold_sweep.png"}
    waves = sorted((run / "audio").glob("*.wav"))
    assert [p.stem for p in waves] == ["generation", "original", "reconstruction"]
    assert all(sf.info(str(p)).frames > 0 for p in waves)
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    assert all((run / "sweep" / f"fold-{n}" / "metrics.jsonl").is_file() for n in (8, 16, 32))
    assert (run / "40_mel_expansion.ipynb").is_file()
