"""GPU smoke check: train SPLADE briefly on a builtin-size and a NorBERT4-base-size GPT-BERT model, and report.

    python benchmarks/gpu_smoke.py                 # on a CUDA host: bf16, 200 steps per model, a few minutes
    python benchmarks/gpu_smoke.py --device cpu --precision fp32 --steps 3 --sizes builtin   # a dry run anywhere

Both models use the project's GPT-BERT (NorBERT4-layout) remote code, patched by the real `patch` code path
(soft cap removed, rotary buffers fixed), with random weights of the given size: what is measured is the code
path and the speed, not quality. It prints one JSON line per model: tokens/s, peak GPU memory, whether the
forward pass ran in bf16 (NorBERT4's code casts to bf16 by itself on CUDA) and whether ``flash_attn`` was
importable and its branch taken (no ``cos_matrix``/``sin_matrix`` buffers). Exit status 1 if a check fails.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {  # name -> builtin params overrides (norbert4-base: hidden 768, 12 layers, 51,200 tokens)
    "builtin": {"vocab_size": 8000, "hidden_size": 128, "intermediate_size": 320, "num_layers": 2, "num_attention_heads": 4},
    "norbert4-base-layout": {"vocab_size": 51200, "hidden_size": 768, "intermediate_size": 2048, "num_layers": 12,
                             "num_attention_heads": 12},
}


def build_base(size: str, folder: Path, texts: list[str]) -> Path:
    """A random-weight GPT-BERT folder of the given size, patched through the project's patch code."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForMaskedLM

    from norsparse.base_model.builtin import model_config, train_tokenizer, write_remote_code
    from norsparse.base_model.patching import patch_base_model
    from norsparse.params import BuiltinParams, Params, load_params

    builtin = BuiltinParams(**(load_params(ROOT / "params.yaml").builtin.model_dump() | SIZES[size]))
    raw = folder / "raw"
    raw.mkdir(parents=True)
    tokenizer = train_tokenizer(texts, builtin.vocab_size, builtin.max_length)
    write_remote_code(raw, model_config(builtin, len(tokenizer)))
    config = AutoConfig.from_pretrained(raw, trust_remote_code=True)
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config, trust_remote_code=True)
    with torch.no_grad():  # a trained head puts most raw logits below zero; a random one centres them on it
        model.classifier.emb2vocab.bias.fill_(-3.0)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(raw / "model.safetensors"),
              metadata={"format": "pt"})
    tokenizer.save_pretrained(raw)
    params = load_params(ROOT / "params.yaml").model_dump(by_alias=True)
    params["model"] |= {"base_model": str(raw), "trust_remote_code": True}
    patched = folder / "base"
    patched.mkdir()
    (folder / "work").mkdir()
    patch_base_model(Params.model_validate(params), texts, patched, workdir=folder / "work")
    return patched


def smoke(size: str, device: str, precision: str, steps: int, batch_size: int, texts: list[tuple[str, str]]) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer

    from norsparse.architectures import build_loss, splade_encoder
    from norsparse.params import Params, load_params
    from norsparse.training import training_arguments

    with tempfile.TemporaryDirectory(prefix=f"norsparse-smoke-{size}-") as tmp:
        base = build_base(size, Path(tmp), [t for pair in texts for t in pair])
        model = splade_encoder(base, 256).to(device)
        raw = load_params(ROOT / "params.yaml").model_dump(by_alias=True)
        raw["train"] |= {"max_steps": steps, "batch_size": batch_size, "eval_steps": steps, "select_best": False,
                         "deterministic": False}
        params = Params.model_validate(raw)
        args = training_arguments(params, Path(tmp) / "checkpoints", device, precision, {})
        args.save_strategy, args.eval_strategy = "no", "no"
        dtypes, branches = set(), {"flash_attn_importable": importlib.util.find_spec("flash_attn") is not None}
        rotary = [m for m in model.modules() if type(m).__name__.lower().startswith("rotary")]
        branches["rotary_buffers"] = sorted({n for m in rotary for n in m._buffers})
        branches["flash_attn_branch"] = bool(rotary) and not branches["rotary_buffers"]
        hook = model[0].auto_model.classifier.register_forward_hook(lambda mod, inp, out: dtypes.add(str(out.dtype)))
        data = Dataset.from_dict({"anchor": [q for q, _ in texts], "positive": [p for _, p in texts]})
        trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=data, loss=build_loss(params, model))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        tokens = 0
        tokenizer = model.tokenizer
        for q, p in texts:  # exactly steps * batch_size pairs: one pass
            tokens += len(tokenizer(q)["input_ids"]) + len(tokenizer(p)["input_ids"])
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        hook.remove()
        return {
            "model": size, "device": device, "precision": precision, "steps": steps, "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens / seconds),
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
            "head_output_dtypes": sorted(dtypes), "bf16_ran": "torch.bfloat16" in dtypes, **branches,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()

    from norsparse.beir import load_beir

    sample = load_beir(ROOT / "data/sample")
    documents = sample.documents()
    pairs = [(sample.queries[q], documents[d]) for q, docs in sample.qrels.items() for d in docs if q in sample.queries]
    pairs = (pairs * (1 + args.steps * args.batch_size // len(pairs)))[: args.steps * args.batch_size]
    failed = False
    for size in args.sizes:
        report = smoke(size, args.device, args.precision, args.steps, args.batch_size, pairs)
        print(json.dumps(report), flush=True)
        failed |= args.precision == "bf16" and not report["bf16_ran"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
