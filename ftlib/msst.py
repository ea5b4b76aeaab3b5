"""Importing community checkpoints of Music-Source-Separation-Training (MSST, ZFTurbo).

MSST publishes a model as a YAML config (``model:`` holds the constructor's keyword arguments,
``audio:`` and ``training:`` the rest) and a ``.ckpt`` holding ``model.state_dict()``. Its
``bs_roformer`` and ``mel_band_roformer`` models are ftlib's ``bs_roformer`` and ``mel_roformer``
with other parameter names::

    ftlib import-msst config_vocals_mel_band_roformer_kj.yaml MelBandRoformer.ckpt models/kj/

    >>> path, model = import_checkpoint("config.yaml", "model.ckpt", "models/kj")

Weights are read with ``torch.load(..., weights_only=True)`` only (or from safetensors): a pickle
that needs code to load is refused, never run. The YAML is read with a safe loader that also knows
``!!python/tuple``. Every config key and every tensor is checked before anything is written: an
architecture ftlib does not have, options it does not implement, missing, unexpected or mis-shaped
tensors each raise a ConfigError or CheckpointError naming the file, and the output folder appears
complete or not at all.

Names (MSST -> ftlib), ``i`` block, ``a`` 0 time / 1 band transformer, ``j`` layer, ``k`` band,
``s`` stem, ``m`` linear layer::

    band_split.to_features.k.0.gamma          band_split.k.norm.weight
    band_split.to_features.k.1.{weight,bias}  band_split.k.proj.{weight,bias}
    layers.i.a.layers.j.0.norm.gamma          blocks.i.{time,freq}.layers.j.attn.norm.weight
    layers.i.a.layers.j.0.to_qkv.weight       blocks.i.{time,freq}.layers.j.attn.qkv.weight
    layers.i.a.layers.j.0.to_gates.*          blocks.i.{time,freq}.layers.j.attn.gates.*
    layers.i.a.layers.j.0.to_out.0.weight     blocks.i.{time,freq}.layers.j.attn.out.weight
    layers.i.a.layers.j.0.rotary_embed.freqs  (checked to be the standard frequencies, dropped)
    layers.i.a.layers.j.1.net.0.gamma         blocks.i.{time,freq}.layers.j.ff.norm.weight
    layers.i.a.layers.j.1.net.{1,4}.*         blocks.i.{time,freq}.layers.j.ff.{up,down}.*
    layers.i.a.norm.gamma                     blocks.i.{time,freq}.norm.weight   (Mel-Band RoFormer)
    final_norm.gamma                          final_norm.weight                  (BS-RoFormer)
    mask_estimators.s.to_freqs.k.0.{2m}.*     mask_estimators.s.k.layers.m.*
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ftlib import checkpoint, models
from ftlib.errors import CheckpointError, ConfigError

# MSST's model_type -> ftlib family
FAMILIES = {"bs_roformer": "bs_roformer", "mel_band_roformer": "mel_roformer", "mel_roformer": "mel_roformer"}

# model keys that only concern MSST's training or kernels (the loss, checkpointing, flash/sage attention)
_IGNORED = {"flash_attn", "sage_attention", "use_torch_checkpoint", "dim_freqs_in", "match_input_audio_length",
            "multi_stft_resolution_loss_weight", "multi_stft_resolutions_window_sizes", "multi_stft_hop_size",
            "multi_stft_normalized"}
_COMMON = {"dim", "depth", "stereo", "num_stems", "time_transformer_depth", "freq_transformer_depth",
           "linear_transformer_depth", "dim_head", "heads", "attn_dropout", "ff_dropout", "stft_n_fft",
           "stft_hop_length", "stft_win_length", "stft_normalized", "mask_estimator_depth", "mlp_expansion_factor",
           "skip_connection"}
_KNOWN = {"bs_roformer": _COMMON | {"freqs_per_bands"} | _IGNORED,
          "mel_roformer": _COMMON | {"num_bands", "sample_rate"} | _IGNORED}
# MSST's constructor defaults, for keys a config leaves out
_DEFAULTS = {
    "bs_roformer": dict(stereo=False, num_stems=1, time_transformer_depth=2, freq_transformer_depth=2,
                        linear_transformer_depth=0, dim_head=64, heads=8, attn_dropout=0.0, ff_dropout=0.0,
                        stft_n_fft=2048, stft_hop_length=512, stft_win_length=2048, stft_normalized=False,
                        mask_estimator_depth=2, mlp_expansion_factor=4, skip_connection=False),
    "mel_roformer": dict(stereo=False, num_stems=1, time_transformer_depth=2, freq_transformer_depth=2,
                         linear_transformer_depth=0, num_bands=60, dim_head=64, heads=8, attn_dropout=0.1,
                         ff_dropout=0.1, sample_rate=44100, stft_n_fft=2048, stft_hop_length=512,
                         stft_win_length=2048, stft_normalized=False, mask_estimator_depth=1,
                         mlp_expansion_factor=4, skip_connection=False),
}


# ------------------------------------------------------------------------------------- config

class _Loader(yaml.SafeLoader):
    """The safe YAML loader plus ``!!python/tuple`` (MSST writes band sizes as tuples)."""


_Loader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node)))


def read_config(path: str | Path) -> dict[str, Any]:
    """An MSST YAML config as a dict (safe loading)."""
    path = Path(path)
    try:
        values = yaml.load(path.read_text(), Loader=_Loader)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the MSST config ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not a readable MSST YAML config ({str(exc).splitlines()[0]})") from exc
    if not isinstance(values, dict) or not isinstance(values.get("model"), dict):
        raise ConfigError(f"{path}: an MSST config needs a 'model:' section of constructor arguments")
    return values


def detect_family(values: dict[str, Any], path: str | Path = "config", model_type: str | None = None) -> str:
    """The ftlib family of an MSST config: ``model_type`` (MSST's name) when given, else guessed from
    its band keys (``freqs_per_bands``: BS-RoFormer, ``num_bands``: Mel-Band RoFormer)."""
    if model_type is not None:
        if model_type not in FAMILIES:
            raise ConfigError(f"{path}: MSST model type {model_type!r} has no ftlib counterpart; "
                              f"ftlib imports {', '.join(sorted(FAMILIES))}")
        return FAMILIES[model_type]
    keys = set(values["model"])
    if "freqs_per_bands" in keys and "num_bands" not in keys:
        return "bs_roformer"
    if "num_bands" in keys and "freqs_per_bands" not in keys:
        return "mel_roformer"
    raise ConfigError(f"{path}: not an MSST BS-RoFormer (freqs_per_bands) or Mel-Band RoFormer (num_bands) config, "
                      f"the only architectures ftlib imports (model keys: {', '.join(sorted(map(str, keys)))}); "
                      "pass --model-type if it is one of them")


def _stems(values: dict[str, Any], num_stems: int) -> tuple[str, ...]:
    """Stem names from the config's ``training`` section, in the order of the mask estimators."""
    training = values.get("training") or {}
    instruments = [str(s) for s in training.get("instruments") or []]
    target = training.get("target_instrument")
    if num_stems == 1:
        return (str(target) if target else instruments[0] if instruments else "vocals",)
    if len(instruments) == num_stems and len(set(instruments)) == num_stems:
        return tuple(instruments)
    return tuple(f"stem{i}" for i in range(num_stems))


def convert_config(values: dict[str, Any], family: str, path: str | Path = "config", stem: str | None = None):
    """The ftlib config of an MSST config. ``stem`` picks what ``forward`` returns ("all": every stem);
    by default the vocals when the model has them, else its only stem, else all."""
    given = values["model"]
    unknown = sorted(set(map(str, given)) - _KNOWN[family])
    if unknown:
        raise ConfigError(f"{path}: model option(s) {', '.join(unknown)} are not part of ftlib's {family}; "
                          "is it another MSST architecture?")
    m = {**_DEFAULTS[family], **given}
    if "dim" not in m or "depth" not in m:
        raise ConfigError(f"{path}: the model section needs 'dim' and 'depth'")
    if m["linear_transformer_depth"]:
        raise ConfigError(f"{path}: linear_transformer_depth={m['linear_transformer_depth']} (linear-attention layers) "
                          "is not implemented in ftlib")
    if m["stft_normalized"]:
        raise ConfigError(f"{path}: stft_normalized=true is not supported (ftlib's STFT is not normalised)")
    hidden = m["mask_estimator_depth"] - 1 if family == "bs_roformer" else m["mask_estimator_depth"]
    stems = _stems(values, int(m["num_stems"]))
    target = stem if stem is not None else "vocals" if "vocals" in stems else stems[0] if len(stems) == 1 else ""
    if target not in ("", "all", *stems):
        raise ConfigError(f"{path}: the model has stems {', '.join(stems)}, not {target!r}")
    audio = values.get("audio") or {}
    fields = dict(
        in_channels=2 if m["stereo"] else 1, sample_rate=m.get("sample_rate", audio.get("sample_rate", 44100)),
        stft_n_fft=m["stft_n_fft"], stft_hop_length=m["stft_hop_length"], stft_win_length=m["stft_win_length"],
        dim=m["dim"], depth=m["depth"], time_depth=m["time_transformer_depth"],
        freq_depth=m["freq_transformer_depth"], num_heads=m["heads"], head_dim=m["dim_head"], ff_mult=4.0,
        attention_dropout=m["attn_dropout"], ff_dropout=m["ff_dropout"], mask_hidden_layers=hidden,
        mask_expansion=m["mlp_expansion_factor"], output_norm="final" if family == "bs_roformer" else "each",
        skip_connections=m["skip_connection"], stems=stems, target_stem="" if target == "all" else target)
    if family == "bs_roformer":
        if "freqs_per_bands" in m:
            fields["freqs_per_bands"] = tuple(m["freqs_per_bands"])
    else:
        fields["num_bands"] = m["num_bands"]
    try:
        return models.lookup(family)[0].from_dict(fields)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# ------------------------------------------------------------------------------------- weights

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an MSST checkpoint: a state dict, or a dict with a ``state_dict`` entry
    (Lightning), loaded without running any pickled code (or a .safetensors file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "global" not in reason.lower():  # not a pickle at all, or a broken one
            raise CheckpointError(f"{path}: cannot read it as a PyTorch checkpoint ({reason})") from exc
        raise CheckpointError(f"{path} is not a plain state dict: it pickles objects that only running their code "
                              f"could rebuild, and ftlib loads weights only ({reason}); re-save it with "
                              "torch.save(model.state_dict(), path)") from exc
    except Exception as exc:  # truncated zips, text files, ...
        raise CheckpointError(f"{path}: cannot read it as a PyTorch checkpoint ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    odd = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise CheckpointError(f"{path} is not a plain state dict: {_some(odd)} are not tensors")
    for prefix in ("module.", "_orig_mod.", "model."):  # DDP, torch.compile and Lightning wrappers
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _unpickler_reason(exc: Exception) -> str:
    """The line of torch's weights-only error that says what it refused."""
    text = str(exc)
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if found else text).splitlines() if line.strip()]
    return lines[0].split(" Please use")[0] if lines else type(exc).__name__


_LAYER = {"attn.norm.weight": "0.norm.gamma", "attn.qkv.weight": "0.to_qkv.weight",
          "attn.gates.weight": "0.to_gates.weight", "attn.gates.bias": "0.to_gates.bias",
          "attn.out.weight": "0.to_out.0.weight", "ff.norm.weight": "1.net.0.gamma",
          "ff.up.weight": "1.net.1.weight", "ff.up.bias": "1.net.1.bias",
          "ff.down.weight": "1.net.4.weight", "ff.down.bias": "1.net.4.bias"}
_AXIS = {"time": 0, "freq": 1}


def msst_name(name: str) -> str:
    """The MSST name of an ftlib band-split RoFormer parameter (see the module docstring)."""
    if m := re.fullmatch(r"band_split\.(\d+)\.norm\.weight", name):
        return f"band_split.to_features.{m[1]}.0.gamma"
    if m := re.fullmatch(r"band_split\.(\d+)\.proj\.(weight|bias)", name):
        return f"band_split.to_features.{m[1]}.1.{m[2]}"
    if m := re.fullmatch(r"blocks\.(\d+)\.(time|freq)\.layers\.(\d+)\.(.+)", name):
        if m[4] in _LAYER:
            return f"layers.{m[1]}.{_AXIS[m[2]]}.layers.{m[3]}.{_LAYER[m[4]]}"
    if m := re.fullmatch(r"blocks\.(\d+)\.(time|freq)\.norm\.weight", name):
        return f"layers.{m[1]}.{_AXIS[m[2]]}.norm.gamma"
    if name == "final_norm.weight":
        return "final_norm.gamma"
    if m := re.fullmatch(r"mask_estimators\.(\d+)\.(\d+)\.layers\.(\d+)\.(weight|bias)", name):
        return f"mask_estimators.{m[1]}.to_freqs.{m[2]}.0.{2 * int(m[3])}.{m[4]}"
    raise KeyError(f"no MSST name for {name!r}")


def _some(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def convert_state_dict(state: dict[str, torch.Tensor], model: nn.Module,
                       path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """MSST tensors renamed for ``model`` (an ftlib band-split RoFormer), after checking that they
    are exactly the ones its config calls for, with the right shapes."""
    expected = model.state_dict()
    names = {msst_name(n): n for n in expected}
    head_dim = model.config.head_dim
    rotary = {msst_name(n)[: -len("to_qkv.weight")] + "rotary_embed.freqs" for n in expected
              if n.endswith("attn.qkv.weight")}
    problems = []
    unexpected = sorted(set(state) - set(names) - rotary)
    if unexpected:
        problems.append(f"unexpected tensor(s) {_some(unexpected)}")
    missing = sorted(set(names) - set(state))
    if missing:
        problems.append(f"missing tensor(s) {_some(missing)}")
    shapes = [f"{k} {list(state[k].shape)} (config: {list(expected[names[k]].shape)})" for k in names
              if k in state and state[k].shape != expected[names[k]].shape]
    if shapes:
        problems.append(f"mis-shaped tensor(s) {_some(shapes)}")
    standard = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    odd = sorted(k for k in rotary & set(state)
                 if state[k].shape != standard.shape or not torch.allclose(state[k].float(), standard))
    if odd:
        problems.append(f"rotary frequencies other than the standard ones (theta 10000) in {_some(odd)}")
    if problems:
        raise CheckpointError(f"{path} does not match its config ({model.model_name}): " + "; ".join(problems))
    return {name: state[key].to(expected[name].dtype) for key, name in names.items()}


# -------------------------------------------------------------------------------------- import

def import_checkpoint(config_path: str | Path, weights_path: str | Path, out: str | Path,
                      model_type: str | None = None, stem: str | None = None,
                      overwrite: bool = False) -> tuple[Path, nn.Module]:
    """Convert an MSST BS-RoFormer / Mel-Band RoFormer (config + weights) into an ftlib checkpoint
    folder ``out``; returns ``(out, model)``. ``model_type`` is MSST's name (``bs_roformer``,
    ``mel_band_roformer``), guessed from the config when None; ``stem`` as in :func:`convert_config`."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out} already exists; choose a new folder or pass --overwrite")
    values = read_config(config_path)
    family = detect_family(values, config_path, model_type)
    config = convert_config(values, family, config_path, stem)
    state = read_state_dict(weights_path)
    model = models.from_config(family, config)
    model.load_state_dict(convert_state_dict(state, model, weights_path))
    inference = {"imported_from": f"MSST {Path(config_path).name} + {Path(weights_path).name}"}
    audio, settings = values.get("audio") or {}, values.get("inference") or {}
    if "chunk_size" in audio:
        inference["chunk_size"] = audio["chunk_size"]  # samples per chunk MSST separates with
        inference["cropsize"] = max(1, int(audio["chunk_size"]) // model.config.stft_hop_length)  # frames, ftlib's
    if "num_overlap" in settings:
        inference["num_overlap"] = settings["num_overlap"]
    return checkpoint.save(model.eval(), out, inference=inference), model.eval()
