"""Numerical checks on a masked-LM folder: what SPLADE would see, and whether it loads and saves."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch


def special_token_ids(tokenizer, config=None) -> list[int]:
    """Ids that are not words: the tokenizer's special tokens and the config's BOS/EOS/PAD/CLS/SEP/MASK/UNK."""
    ids = set(tokenizer.all_special_ids)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id", "unk_token_id"):
        for source in (tokenizer, config):
            value = getattr(source, attr, None) if source is not None else None
            if isinstance(value, int) and value >= 0:
                ids.add(value)
    return sorted(ids)


def masked_lm_class(folder: Path, trust_remote_code: bool):
    """The masked-LM class of a folder, read from its own ``auto_map`` when it ships remote code.

    transformers' Auto classes remember one model class per config class; two folders whose configuration
    code is identical share a config class, so in one process the second folder would get the first one's
    (unpatched) model class. Resolving the class from the folder itself avoids that.
    """
    import json

    from transformers import AutoModelForMaskedLM
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    reference = (json.loads((Path(folder) / "config.json").read_text()).get("auto_map") or {}).get("AutoModelForMaskedLM")
    if reference and trust_remote_code:
        return get_class_from_dynamic_module(reference, str(folder))
    return AutoModelForMaskedLM


def load_masked_lm(folder: Path, trust_remote_code: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    model = masked_lm_class(folder, trust_remote_code).from_pretrained(folder, trust_remote_code=trust_remote_code).eval()
    return model, tokenizer


@torch.no_grad()
def probe_logits(model, tokenizer, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    encoded = tokenizer([text], return_tensors="pt")
    logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits
    return logits[0].float(), encoded["attention_mask"][0]


def logit_stats(logits: torch.Tensor, attention: torch.Tensor, special_ids: list[int]) -> dict:
    """What SPLADE makes of these logits: ``max over tokens of log1p(relu(x))``."""
    real = logits[attention.bool()]
    vector = torch.log1p(torch.relu(real)).max(dim=0).values
    words = torch.ones_like(vector, dtype=torch.bool)
    words[[i for i in special_ids if i < vector.numel()]] = False
    return {
        "finite": bool(torch.isfinite(real).all()),
        "min_logit": round(float(real.min()), 4),
        "max_logit": round(float(real.max()), 4),
        "negative_logit_fraction": round(float((real < 0).float().mean()), 4),
        "splade_active_dims": int((vector > 0).sum()),
        "splade_zero_fraction": round(float((vector == 0).float().mean()), 4),
        "splade_active_word_dims": int(((vector > 0) & words).sum()),
        "special_dims_active": [i for i in special_ids if i < vector.numel() and vector[i] > 0],
    }


def checkpoint_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if files:
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        return state
    bins = sorted(folder.glob("pytorch_model*.bin"))
    state = {}
    for f in bins:
        state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state


def checkpoint_keys(folder: Path) -> set[str]:
    from safetensors import safe_open

    keys: set[str] = set()
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), "pt") as handle:
            keys.update(handle.keys())
    if not keys:
        keys = set(checkpoint_state_dict(folder))
    return keys


@torch.no_grad()
def check_round_trip(folder: Path, trust_remote_code: bool, text: str) -> dict:
    """Loaded == freshly constructed with the same weights == saved and reloaded."""
    from transformers import AutoConfig

    model, tokenizer = load_masked_lm(folder, trust_remote_code)
    loaded, attention = probe_logits(model, tokenizer, text)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    cls = masked_lm_class(folder, trust_remote_code)
    fresh = cls.from_config(config, trust_remote_code=trust_remote_code) if hasattr(cls, "register") else cls._from_config(config)
    missing, unexpected = fresh.load_state_dict(checkpoint_state_dict(folder), strict=False)
    tied = set(getattr(fresh, "all_tied_weights_keys", {}) or {})
    untied_missing = sorted(set(missing) - tied)
    fresh.tie_weights()
    fresh_logits, _ = probe_logits(fresh.eval(), tokenizer, text)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        reloaded = type(model).from_pretrained(tmp, trust_remote_code=trust_remote_code).eval()
        reloaded_logits, _ = probe_logits(reloaded, tokenizer, text)
    return {
        "finite": bool(torch.isfinite(loaded).all()),
        "max_abs_diff_vs_fresh": float((loaded - fresh_logits).abs().max()),
        "max_abs_diff_after_save_reload": float((loaded - reloaded_logits).abs().max()),
        "weights_missing_from_checkpoint": untied_missing,
        "unexpected_checkpoint_weights": sorted(unexpected),
        "attention_tokens": int(attention.sum()),
    }
