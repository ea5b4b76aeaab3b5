"""Paired comparisons: differences, intervals, wins and the Wilcoxon test on numbers worked out by
hand, refusals of evaluations of different songs, the ``ftlib compare`` command and its figures."""
import csv
import json
import math

import matplotlib
import numpy as np
import pytest
from scipy import stats

matplotlib.use("Agg")

from ftlib import audio, cli, plots  # noqa: E402
from ftlib.compare import (best_counts, check_same_songs, compare, format_comparison, paired_differences,  # noqa: E402
                           difference_sentence, from_rows, signed_rank_test, unique_names, verdict)
from ftlib.errors import DataError  # noqa: E402
from ftlib.evaluate import Evaluation, run_evaluation  # noqa: E402

SONGS = ["s1", "s2", "s3", "s4", "s5", "s6"]


def _evaluation(system: str, sdr: list[float], fullness: list[float] | None = None, songs=SONGS, **song_changes):
    rows = [{"song": s, "sdr_vocals": v, "input_sdr_vocals": 0.0, "note": ""} for s, v in zip(songs, sdr)]
    for row, f in zip(rows, fullness or []):
        row["fullness_vocals"] = f
    prints = [{"name": s, "samples": 1000, "sha256": {"mixture": f"m-{s}", "vocals": f"v-{s}"}} for s in songs]
    for entry in prints:
        entry.update(song_changes.get(entry["name"], {}))
    return Evaluation(system, rows, {"sample_rate": 44100, "songs": prints})


# ------------------------------------------------------------------------------- statistics

def test_paired_differences_by_hand():
    base = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    d = np.array([0.5, 0.3, 0.0, 0.2, 0.5, -0.1])
    out = paired_differences(base, base + d, SONGS)
    assert out["mean"] == pytest.approx(d.mean()) and out["median"] == pytest.approx(0.25)
    assert (out["wins"], out["losses"], out["ties"], out["songs"]) == (4, 1, 1, 6)
    assert out["mean_ci"][0] < d.mean() < out["mean_ci"][1]
    assert out["mean_ci"] == paired_differences(base, base + d, SONGS)["mean_ci"]  # seeded
    # the zero difference is dropped: ranks of |0.5, 0.3, 0.2, 0.5, -0.1| give W- = 1
    assert out["test"]["statistic"] == 1.0
    assert out["test"]["p"] == pytest.approx(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    assert out["differences"]["s1"] == pytest.approx(0.5)


def test_signed_rank_test_ties_and_gaps():
    assert signed_rank_test(np.zeros(5)) == {"statistic": 0.0, "p": 1.0, "note": "every song ties"}
    assert signed_rank_test(np.array([np.nan, np.nan]))["p"] is None
    assert signed_rank_test(np.arange(1.0, 9.0))["p"] == pytest.approx(2 / 2**8)  # exact: all 8 positive
    out = paired_differences(np.array([1.0, np.nan, 3.0]), np.array([2.0, 5.0, np.nan]), ["a", "b", "c"])
    assert out["songs"] == 1 and out["skipped"] == ["b", "c"] and out["mean_ci"] is None


def test_best_counts_share_ties():
    values = np.array([[1.0, 2.0, 3.0, np.nan], [1.0, 1.0, 4.0, 9.0], [0.0, 2.0, 1.0, 9.0]])
    assert best_counts(values) == [2, 2, 1]  # song 4 undefined for the first system: left out


def test_unique_names():
    assert unique_names(["a", "b", "a", "a"]) == ["a", "b", "a (2)", "a (3)"]


# ------------------------------------------------------------------------------- comparison

def test_compare_systems_against_the_first():
    a = _evaluation("A", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [50.0] * 6)
    b = _evaluation("B", [2.0, 3.0, 4.0, 5.0, 6.0, 7.5], [40.0] * 6)
    c = _evaluation("C", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # no fullness: that metric is dropped
    result = compare([a, b, c])
    assert result.systems == ["A", "B", "C"] and result.columns == ["sdr_vocals"]
    assert result.dropped == ["fullness_vocals"]
    pb, pc = result.paired["sdr_vocals"]["B"], result.paired["sdr_vocals"]["C"]
    assert pb["wins"] == 6 and pb["mean"] == pytest.approx(6.5 / 6) and pb["median"] == 1.0
    assert pb["test"]["p"] == pytest.approx(2 / 2**6)
    assert pc["ties"] == 6 and pc["test"]["note"] == "every song ties"
    assert [result.summaries["sdr_vocals"][s]["best"] for s in "ABC"] == [0, 6, 0]
    two = compare([a, b])
    assert two.columns == ["sdr_vocals", "fullness_vocals"]
    assert two.paired["fullness_vocals"]["B"]["losses"] == 6
    table = format_comparison(two)
    assert "SDR vocals (dB), Δ = system - A" in table and "fullness vocals (0-100)" in table
    assert "6/0/0" in table and "0/6/0" in table and "Wilcoxon" in table
    rows = two.rows()
    assert [(r["metric"], r["system"]) for r in rows] == [("sdr", "A"), ("sdr", "B"), ("fullness", "A"),
                                                          ("fullness", "B")]
    assert rows[1]["wins"] == 6 and rows[1]["diff_mean"] == pytest.approx(6.5 / 6) and "p_value" not in rows[0]
    with pytest.raises(DataError, match="not every evaluation has"):
        compare([a, c], columns=["fullness_vocals"])


def test_compare_skips_undefined_songs():
    a = _evaluation("A", [1.0, math.nan, 3.0, 4.0, 5.0, 6.0])  # a silent reference in s2
    b = _evaluation("B", [2.0, math.nan, 4.0, 5.0, 6.0, 7.0])
    p = compare([a, b]).paired["sdr_vocals"]["B"]
    assert p["songs"] == 5 and p["skipped"] == ["s2"] and p["wins"] == 5


def test_rows_of_one_process_and_the_verdict():
    rows = lambda sdr: [{"song": s, "sdr_vocals": v} for s, v in zip(SONGS, sdr)] + [{"song": "summary"}]  # noqa: E731
    clear = from_rows({"scratch": rows([1, 2, 3, 4, 5, 6]), "finetuned": rows([2, 3, 4, 5, 6, 7])})
    assert clear.songs == SONGS and clear.paired["sdr_vocals"]["finetuned"]["wins"] == 6
    text = verdict(clear)
    assert text.startswith("SDR vocals (dB): finetuned - scratch = +1.00 [+1.00, +1.00] over 6 songs, higher on 6/6")
    assert text.endswith("finetuned is better (the interval excludes 0)")
    noisy = from_rows({"A": rows([1, 2, 3, 4, 5, 6]), "B": rows([1.5, 1.5, 3.5, 3.5, 5.5, 5.5])})
    assert verdict(noisy, system="B").endswith("within noise (the interval includes 0)")
    worse = from_rows({"A": rows([1, 2, 3, 4, 5, 6]), "B": rows([0, 1, 2, 3, 4, 5])})
    assert verdict(worse).endswith("B is worse (the interval excludes 0)")
    with pytest.raises(DataError, match="song 's6' missing from B"):
        from_rows({"A": rows([1] * 6), "B": rows([1] * 6)[:5]})
    errors = paired_differences(np.array([1.0, 2, 3, 4, 5, 6]), np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5]), SONGS)
    lower = difference_sentence(errors, "L1", "B", "A", lower_is_better=True)
    assert "lower on 6/6" in lower and lower.endswith("B is better (the interval excludes 0)")


def test_different_songs_are_refused_by_name():
    a = _evaluation("A", [1.0] * 6)
    with pytest.raises(DataError, match=r"song 's6' missing from B"):
        compare([a, _evaluation("B", [1.0] * 5, songs=SONGS[:5])])
    changed = _evaluation("B", [1.0] * 6, s3={"sha256": {"mixture": "m-s3", "vocals": "other"}}, s4={"samples": 999})
    with pytest.raises(DataError) as error:
        check_same_songs([a, changed])
    assert "song 's3' differs between A and B: vocals reference content differs" in str(error.value)
    assert "song 's4' differs between A and B: 1000 against 999 samples" in str(error.value)
    other_rate = _evaluation("B", [1.0] * 6)
    other_rate.fingerprint["sample_rate"] = 48000
    with pytest.raises(DataError, match="sample rates differ"):
        check_same_songs([a, other_rate])


def test_comparison_files(tmp_path):
    result = compare([_evaluation("A", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [50.0] * 6),
                      _evaluation("B", [2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [40.0] * 6)])
    data = json.loads(result.save(tmp_path / "c.json").read_text())
    assert data["baseline"] == "A" and data["test"]["name"] == "Wilcoxon signed-rank"
    assert data["metrics"]["sdr_vocals"]["values"]["B"]["s1"] == 2.0
    assert data["metrics"]["sdr_vocals"]["paired"]["B"]["differences"]["s6"] == 1.0
    assert data["fingerprint"]["songs"][0]["name"] == "s1"
    rows = list(csv.DictReader(result.save_csv(tmp_path / "c.csv").open()))
    assert len(rows) == 4 and rows[1]["system"] == "B" and float(rows[1]["diff_median"]) == 1.0


# ----------------------------------------------------------------------------------- figures

def test_comparison_figures():
    result = compare([_evaluation("A", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [50.0, 40, 45, 42, 48, 41]),
                      _evaluation("B", [2.0, 1.0, 4.0, 4.0, 6.0, 7.0], [40.0, 41, 44, 43, 47, 40]),
                      _evaluation("C", [0.0, 2.0, 3.5, 4.0, 5.0, 6.5], [30.0, 35, 38, 33, 36, 37])])
    fig = plots.paired_songs(result, "sdr_vocals", ["A", "B"])
    ax = fig.axes[0]
    assert len(ax.lines) == 6 + 1  # one per song and the means
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B"] and "B higher on 4 of 6 songs" == ax.get_title()
    colors = {line.get_color() for line in ax.lines[:6]}
    assert colors == {"tab:green", "tab:red", "tab:gray"}
    fig = plots.metric_summaries(result)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 and all(len(ax.containers) == 3 for ax in visible)  # error bars per system
    assert visible[0].get_title() == "SDR vocals (dB)"
    fig = plots.metric_scatter(result, x="fullness_vocals", y="sdr_vocals")
    ax = fig.axes[0]
    assert len(ax.collections) == 3 and ax.get_xlabel() == "fullness vocals (0-100)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B", "C"]
    with pytest.raises(ValueError, match="no system 'D'"):
        plots.paired_songs(result, "sdr_vocals", ["A", "D"])


# --------------------------------------------------------------------------- ftlib compare

def _folder(tmp_path):
    """Two short songs and two estimate folders: ``good`` (10% vocal bleed) and ``bad`` (50%)."""
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        inst = (rng.standard_normal((2, 30000)) * 0.1).astype(np.float32)
        voc = (np.sin(np.linspace(0, 900, 30000)) * 0.2).astype(np.float32)[None].repeat(2, 0)
        audio.save(tmp_path / "songs" / name / "mixture.wav", inst + voc)
        audio.save(tmp_path / "songs" / name / "vocals.wav", voc)
        audio.save(tmp_path / "good" / f"{name}_Instruments.wav", inst + 0.1 * voc)
        audio.save(tmp_path / "bad" / f"{name}_Instruments.wav", inst + 0.5 * voc)
    return tmp_path / "songs"


def test_cli_compare_estimates_and_saved_evaluations(tmp_path, capsys):
    songs = _folder(tmp_path)
    run_evaluation(songs, estimates=tmp_path / "good", metrics=["sdr", "fullness"]).save(tmp_path / "good.json")
    code = cli.main(["compare", str(songs), "-e", str(tmp_path / "bad"), "--json", str(tmp_path / "good.json"),
                     "--metrics", "sdr,fullness", "--quiet", "--csv", str(tmp_path / "c.csv"),
                     "--json-out", str(tmp_path / "c.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "SDR vocals (dB), Δ = system - bad" in out and "2/0/0" in out  # command-line order: bad is the baseline
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["systems"] == ["bad", "good"] and set(data["metrics"]) == {"sdr_vocals", "sdr_instrumental",
                                                                        "fullness_vocals", "fullness_instrumental"}
    assert data["metrics"]["sdr_vocals"]["paired"]["good"]["wins"] == 2
    assert len(list(csv.DictReader((tmp_path / "c.csv").open()))) == 8
    # saved evaluations alone, checked against DATA
    assert cli.main(["compare", str(songs), "--json", str(tmp_path / "good.json"), "--json",
                     str(tmp_path / "good.json"), "--quiet"]) == 0
    assert "good (2)" in capsys.readouterr().out


def test_cli_compare_refuses_other_songs(tmp_path, capsys):
    songs = _folder(tmp_path)
    (tmp_path / "bad" / "b_Instruments.wav").unlink()
    assert cli.main(["compare", str(songs), "-e", str(tmp_path / "good"), "-e", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "no estimate <song>_Instruments.* for 1 of 2 songs: 'b'" in capsys.readouterr().err
    run_evaluation(songs, estimates=tmp_path / "good", metrics=["sdr"]).save(tmp_path / "good.json")
    audio.save(songs / "c" / "mixture.wav", np.zeros((2, 1000), np.float32) + 0.1)
    audio.save(songs / "c" / "vocals.wav", np.zeros((2, 1000), np.float32))
    assert cli.main(["compare", str(songs), "--json", str(tmp_path / "good.json"), "--json",
                     str(tmp_path / "good.json")]) == 2
    assert "song 'c' missing from good" in capsys.readouterr().err
    assert cli.main(["compare", "--json", str(tmp_path / "good.json")]) == 2
    assert "two or more systems" in capsys.readouterr().err
    assert cli.main(["compare", "-e", str(tmp_path / "good"), "--json", str(tmp_path / "good.json")]) == 2
    assert "give the DATA folder" in capsys.readouterr().err


def test_cli_compare_takes_training_run_folders(tmp_path, capsys):
    for name, sdr in (("run-a", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), ("run-b", [1.5, 2.5, 3.0, 5.0, 5.5, 6.5])):
        evaluation = _evaluation("ignored", sdr)
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"recipe": "separation", "sdr_vocals": 3.5, "songs": evaluation.rows, "fingerprint": evaluation.fingerprint}))
    loaded = Evaluation.load(tmp_path / "run-b")
    assert loaded.system == "run-b" and [r["sdr_vocals"] for r in loaded.rows][:2] == [1.5, 2.5]
    assert cli.main(["compare", "--json", str(tmp_path / "run-a"), "--json", str(tmp_path / "run-b" / "metrics.json"),
                     "--json-out", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["metrics"]["sdr_vocals"]["paired"]["run-b"]["wins"] == 5
    (tmp_path / "run-c").mkdir()
    (tmp_path / "run-c" / "metrics.json").write_text(json.dumps({"recipe": "separation", "sdr_vocals": 3.0}))
    with pytest.raises(DataError, match="no songs or no fingerprint"):
        Evaluation.load(tmp_path / "run-c")
