"""GPU acceptance: the Python checks of ``bench/gpu_check.sh`` (which adds the notebooks and DDP).

    python bench/gpu_check.py --work /tmp/gpu-check              # on a CUDA GPU, about 8 minutes
    python bench/gpu_check.py --work /tmp/check --device cpu --quick   # the same code path, tiny, on the CPU

Sections: (1) every separation family and the other recipes train a few steps in bf16 + EMA and in
fp16 and resume; the host synchronisations of a run do not grow with its steps. (2) The fused
families train at real size with only the flash kernel allowed (a fallback to the math path raises)
and half-precision activations. (3) Fused against explicit attention at 512, 1024 and 2048 frames:
time and peak memory, the baseline measured in the same run. (4) Separation of a 3-minute song:
real-time factor and peak memory, the autocast mask against float32, and diffusion separation.
Every check prints a PASS or FAIL row; the figures are printed as a table at the end and written to
``<work>/figures.md``. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from separate import write_song  # noqa: E402  (bench/separate.py)

from ftlib import models, recipes  # noqa: E402
from ftlib.layers import MultichannelLinear, MultichannelMultiheadAttention  # noqa: E402
from ftlib.recipes import diffusion_separation  # noqa: E402
from ftlib.separation import Separator, predict_mask  # noqa: E402

FAMILIES = ("frame_transformer", "frame_primer", "temporal_unet", "asym_unet_mct")
RESULTS: list[tuple[str, bool, str]] = []
FIGURES: list[tuple[str, str]] = []


@contextlib.contextmanager
def check(name: str):
    """``with check(name) as notes: ...``: a PASS row, or a FAIL row naming the exception."""
    started, notes = time.time(), []
    try:
        yield notes
        ok = True
    except Exception as exc:  # every failure is reported and the script goes on
        ok = False
        notes.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        traceback.print_exc(file=sys.stderr)
    RESULTS.append((name, ok, f"{time.time() - started:.0f} s" + (f"; {'; '.join(notes)}" if notes else "")))
    print(f"{'PASS' if ok else 'FAIL'} {name} ({RESULTS[-1][2]})", flush=True)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_mb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ------------------------------------------------------------------------- 1. recipes and engine

def recipes_train_and_resume(work: Path, device: str) -> None:
    modes = (("bf16", 0.999), ("fp16", 0.0))
    cases = [(f"{family} {mode}{' + EMA' if ema else ''}", recipes.separation.Config.preset(
        "tiny", model=dict(name=family), train=dict(steps=6, checkpoint_every=3, mixed_precision=mode, ema_decay=ema,
                                                   device=device)))
             for family in FAMILIES for mode, ema in modes]
    cases += [(f"{name} bf16 + EMA", recipes.get(name).Config.preset(
        "tiny", train=dict(steps=6, checkpoint_every=3, mixed_precision="bf16", ema_decay=0.99, device=device)))
              for name in recipes.RECIPES if name != "separation"]
    cases.append(("separation adversarial bf16", recipes.separation.Config.preset(
        "tiny", adversarial=dict(enabled=True), train=dict(steps=6, checkpoint_every=3, mixed_precision="bf16",
                                                           device=device))))
    for name, config in cases:
        with check(f"recipe {name}: trains, resumes, evaluates") as notes:
            folder = work / "recipes" / name.replace(" ", "-").replace("+", "")
            recipes.run(config, folder, stop_after=3)
            model = recipes.run(config, folder)
            assert next(model.parameters()).device.type == device, "the model is not on the training device"
            log = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            assert all(np.isfinite(r["loss"]) for r in log if "loss" in r), "non-finite loss"
            skipped = [r["skipped_steps"] for r in log if "skipped_steps" in r][-1]
            notes.append(f"{skipped} skipped steps")
            assert skipped <= 3, "the fp16 scaler skipped every step"
    if device == "cuda":
        with check("no host synchronisation per training step") as notes:
            counts = {}
            for steps in (4, 12):
                config = recipes.separation.Config.preset("tiny", train=dict(steps=steps, log_every=steps))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    try:
                        recipes.separation.train(config, work / "syncs" / str(steps))
                    finally:
                        torch.cuda.set_sync_debug_mode(0)
                counts[steps] = sum("synchroniz" in str(w.message) for w in caught)
            notes.append(f"syncs for 4 and 12 steps: {counts[4]}, {counts[12]}")
            assert counts[12] == counts[4], "synchronisations grow with the steps"


# --------------------------------------------------------------------- 2. real-size steps, flash only

def _attention(model: torch.nn.Module, explicit: bool) -> None:
    for layer in model.modules():
        if hasattr(layer, "force_explicit"):
            layer.force_explicit = explicit


def _flash_only(device: str):
    if device != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


def real_size_steps(device: str, quick: bool) -> None:
    # the RoFormers at MSST's sizes (8-second chunks at hop 441 and 1024): the step times that size their GPU presets
    cases = [("frame_transformer", "medium", 4, 512), ("frame_transformer", "v4", 1, 512), ("frame_primer", "default", 2, 512),
             ("temporal_unet", "medium", 4, 512), ("frame_transformer", "small_complex", 4, 512),
             ("bs_roformer", "msst_vocals", 2, 801), ("mel_roformer", "default", 2, 801)]
    if quick:
        cases = [(name, "tiny", 2, 32) for name, *_ in cases]
    for name, preset, batch, frames in cases:
        for mode, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            with check(f"{name}/{preset} {mode}, flash kernel only, B={batch} T={frames}") as notes:
                reset_peak(device)
                torch.manual_seed(0)
                model = models.build(name, preset).to(device).train()
                x = torch.rand(batch, model.config.in_channels, model.config.num_bins, frames, device=device)
                if models.is_complex(model):
                    x = torch.polar(x, 6.3 * torch.rand_like(x))
                optimizer = torch.optim.AdamW(model.parameters(), 1e-4, fused=True)
                dtypes = []
                hooks = [m.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
                         for m in model.modules() if isinstance(m, MultichannelLinear)]
                times = []
                with _flash_only(device):
                    for step in range(4):
                        synchronize(device)
                        started = time.perf_counter()
                        with torch.autocast(device, dtype=dtype):
                            loss = (model(x) * x - x / 2).abs().mean()
                        loss.backward()
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                        synchronize(device)
                        times.append(time.perf_counter() - started)
                        for hook in hooks:
                            hook.remove()
                float32 = sum(d == torch.float32 for d in dtypes)
                notes.append(f"{1000 * sorted(times)[1]:.0f} ms/step, peak {peak_mb(device):.0f} MB, "
                             f"{float32}/{len(dtypes)} MultichannelLinear outputs float32")
                assert torch.isfinite(loss) and float32 == 0, "non-finite loss or float32 activations"
                FIGURES.append((f"{name}/{preset} {mode} step (B={batch}, T={frames})",
                                f"{1000 * sorted(times)[1]:.0f} ms, peak {peak_mb(device):.0f} MB"))


# ---------------------------------------------------------------------- 3. fused against explicit

def _timed_pass(module, x, explicit: bool, device: str, dtype, reps: int) -> tuple[float, float]:
    _attention(module, explicit)
    reset_peak(device)
    context = contextlib.nullcontext() if explicit else _flash_only(device)
    with context:
        for i in range(reps + 1):
            if i == 1:
                synchronize(device)
                started = time.perf_counter()
            with torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
                out = module(x)
            (out[0] if isinstance(out, tuple) else out).float().mean().backward()
        synchronize(device)
    return (time.perf_counter() - started) / reps * 1000, peak_mb(device)


def fused_against_explicit(device: str, quick: bool) -> None:
    frame_counts = (32, 64) if quick else (512, 1024, 2048)
    preset, bins = ("tiny", 64) if quick else ("medium", 1024)
    subjects = [("attention layer C=4 F=256 H=4, B=8", lambda: MultichannelMultiheadAttention(4, 256, 4), (8, 4, 256)),
                (f"frame_transformer/{preset}, B=2", lambda: models.build("frame_transformer", preset), (2, 2, bins)),
                (f"temporal_unet/{preset}, B=2", lambda: models.build("temporal_unet", preset), (2, 2, bins))]
    for label, make, shape in subjects:
        torch.manual_seed(0)
        module = make().to(device).train()
        for frames in frame_counts:
            with check(f"fused vs explicit: {label}, T={frames}") as notes:
                x = torch.rand(*shape, frames, device=device, requires_grad=True)
                fused_ms, fused_mb = _timed_pass(module, x, False, device, torch.bfloat16, 2 if quick else 5)
                explicit_ms, explicit_mb = _timed_pass(module, x, True, device, torch.bfloat16, 2 if quick else 5)
                notes.append(f"fused {fused_ms:.1f} ms {fused_mb:.0f} MB, explicit {explicit_ms:.1f} ms "
                             f"{explicit_mb:.0f} MB: {explicit_ms / fused_ms:.2f}x")
                FIGURES.append((f"{label}, T={frames}: explicit / fused time", f"{explicit_ms / fused_ms:.2f}x "
                                f"({fused_ms:.1f} vs {explicit_ms:.1f} ms; {fused_mb:.0f} vs {explicit_mb:.0f} MB)"))
                if device == "cuda":
                    assert explicit_ms > fused_ms, "the fused kernel is not faster"
            del x
        _attention(module, False)


# ---------------------------------------------------------------------------------- 4. separation

def separation(work: Path, device: str, quick: bool) -> None:
    song = write_song(work / "song.wav", 0.1 if quick else 3.0)
    seconds = 6.0 if quick else 180.0
    preset = "tiny" if quick else "medium"
    for batch in (4, 16):
        with check(f"separate a {seconds:.0f}-second song, frame_transformer/{preset}, batch {batch}") as notes:
            torch.manual_seed(0)
            sep = Separator(models.build("frame_transformer", preset), device=device, batch_size=batch)
            sep.separate(np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.1)  # warm-up
            reset_peak(device)
            synchronize(device)
            started = time.perf_counter()
            out = sep.separate_file(song, work / f"separated-{batch}")
            elapsed = time.perf_counter() - started
            assert np.isfinite(sf.read(out["vocals"])[0]).all(), "non-finite audio"
            notes.append(f"RTF {elapsed / seconds:.4f}, peak {peak_mb(device):.0f} MB")
            FIGURES.append((f"separation RTF, {seconds:.0f}-s song, batch {batch}",
                            f"{elapsed / seconds:.4f} ({elapsed:.1f} s), peak {peak_mb(device):.0f} MB"))
    with check("autocast mask against the float32 mask") as notes:
        model = models.build("frame_transformer", preset).to(device).eval()
        magnitude = torch.rand(2, model.config.num_bins, 64 if quick else 1300, device=device)
        auto = predict_mask(model, magnitude, 64 if quick else 256, 16 if quick else 64, precision="auto")
        exact = predict_mask(model, magnitude, 64 if quick else 256, 16 if quick else 64, precision="fp32")
        error = float((auto - exact).abs().max())
        notes.append(f"max |mask difference| {error:.2e}")
        FIGURES.append(("autocast vs float32 mask, max difference", f"{error:.2e}"))
        assert error < 0.05, "the autocast mask is far from the float32 one"
    with check("diffusion separation, DDIM 10 steps") as notes:
        config = diffusion_separation.Config.preset("tiny" if quick else "default", model=dict(preset="tiny" if quick else "small"))
        denoiser = diffusion_separation.build_denoiser(config).to(device)
        objective = config.objective_fn()
        sep = Separator(diffusion_separation.DiffusionSeparator(denoiser, objective, "ddim", 10),
                        config.data.spectrogram, device=device, batch_size=8)
        wave = np.random.default_rng(0).standard_normal((2, 44100 * (1 if quick else 20))).astype(np.float32) * 0.1
        started = time.perf_counter()
        stems = sep.separate(wave)
        notes.append(f"{time.perf_counter() - started:.1f} s")
        assert np.isfinite(stems["vocals"]).all(), "non-finite audio"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (run folders, songs, figures.md)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU check of the script itself)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAIL no CUDA device visible to torch", flush=True)
        return 1
    args.work.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        FIGURES.append(("device", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, capability "
                                  f"{props.major}.{props.minor}, torch {torch.__version__}, CUDA {torch.version.cuda}"))
    recipes_train_and_resume(args.work, args.device)
    real_size_steps(args.device, args.quick)
    fused_against_explicit(args.device, args.quick)
    separation(args.work, args.device, args.quick)
    table = ["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in FIGURES)]
    rows = ["| check | result | notes |", "|---|---|---|",
            *(f"| {name} | {'PASS' if ok else 'FAIL'} | {notes} |" for name, ok, notes in RESULTS)]
    (args.work / "figures.md").write_text("\n".join(rows + [""] + table) + "\n")
    print("\n" + "\n".join(table))
    failed = sum(not ok for _, ok, _ in RESULTS)
    print(f"\n{len(RESULTS) - failed} passed, {failed} failed; tables in {args.work / 'figures.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
