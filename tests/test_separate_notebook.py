"""notebooks/50_separate.ipynb executed headless with its smoke parameters."""
import json
import math
from pathlib import Path

from ftlib import cli

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "50_separate.ipynb"


def test_separate_notebook_smoke_run(tmp_path):
    assert cli.main(["run", str(NOTEBOOK), "-p", "smoke", "true", "--runs-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["smoke"] is True and metrics["songs"] == 2 and len(metrics["models"]) == 2
    for key in ("sdr_vocals_single", "sdr_vocals_ensemble", "sisdr_instrumental_ensemble", "input_sdr_vocals",
                "rtf_single", "rtf_ensemble"):
        assert math.isfinite(metrics[key]), key
    assert {p.name for p in (run / "figures").iterdir()} == {"scores.png", "spectrograms.png"}
    assert len(list((run / "audio").glob("*.wav"))) == 4
    for system in ("single", "ensemble"):
        assert len(list((run / "separated" / system).glob("song_*_Instruments.wav"))) == 2
    assert (run / "50_separate.ipynb").is_file()
