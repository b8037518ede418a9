"""Measure the real peak GPU memory of a few SFT steps for a course profile and compare it with `estimate_memory`.

The model is DeepSeek-R1-Distill-Qwen-1.5B's exact architecture (`DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG`) with random
weights, built on the GPU: the values of the weights do not change memory, and the GPU machine needs no Hub access.
Every row is `max_length` tokens long, the worst case that `estimate_memory` assumes.

    python benchmarks/memory_peak.py --profile colab-t4-lora --steps 4      # on a CUDA GPU
    python benchmarks/memory_peak.py --profile gpu-full --steps 4
    python benchmarks/memory_peak.py --profile colab-t4-lora --tiny          # CPU smoke test of this script (no measurement)

Writes one JSON line per run to --out (default benchmarks/results/memory_peak.jsonl) and prints a markdown row.
Memory is in GiB (2**30 bytes); `estimate_memory` reports GB (10**9 bytes) and is converted.
"""
import argparse, importlib.util, json, os, platform, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sft_course.config import (DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG, PROFILES, estimate_memory, lora_config,  # noqa: E402
                               make_config)


def gib(n_bytes) -> float: return round(n_bytes / 2**30, 2)


def build_model(profile, tiny:bool, device:str):
    from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM
    if tiny:
        from sft_course.offline import offline_model_path
        cfg = AutoConfig.from_pretrained(offline_model_path())
    else: cfg = Qwen2Config(**DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG)
    attn = profile.attn_implementation
    if attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None: attn = "sdpa"  # recorded below
    if device == "cpu": attn = "sdpa"
    dtype = getattr(torch, profile.torch_dtype)
    with torch.device(device): model = Qwen2ForCausalLM._from_config(cfg, dtype=dtype, attn_implementation=attn)
    return model, cfg, attn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="colab-t4-lora", choices=list(PROFILES))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=None, help="per_device_train_batch_size (default: the profile's)")
    ap.add_argument("--tiny", action="store_true", help="the offline stand-in on the CPU: checks the script, measures nothing")
    ap.add_argument("--out", default=str(Path(__file__).parent/"results"/"memory_peak.jsonl"))
    a = ap.parse_args(argv)

    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer
    from sft_course.offline import offline_model_and_tokenizer

    device = "cpu" if a.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available(): sys.exit("No CUDA GPU: run with --tiny for a CPU smoke test.")
    p = PROFILES[a.profile]
    model, cfg, attn = build_model(p, a.tiny, device)
    _, tok = offline_model_and_tokenizer()  # the trainer needs a processing class; token ids below are random anyway
    overrides = dict(output_dir=tempfile.mkdtemp(), max_steps=a.steps, eval_strategy="no", save_strategy="no", logging_steps=1,
                     disable_tqdm=True, assistant_only_loss=False, report_to="none")  # pre-tokenized rows carry no assistant mask
    if a.batch: overrides["per_device_train_batch_size"] = a.batch
    if a.tiny: overrides.update(fp16=False, bf16=False, use_cpu=True, max_length=128, packing=False)
    args = make_config(p, check_hardware=not a.tiny, **overrides)
    if attn != p.attn_implementation and (args.packing or args.padding_free):
        print(f"note: {p.attn_implementation} not installed, measuring with {attn}", file=sys.stderr)
    L, n_rows = args.max_length, args.per_device_train_batch_size * args.gradient_accumulation_steps * a.steps
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(10, cfg.vocab_size, (n_rows, L), generator=g).tolist()
    ds = Dataset.from_dict({"input_ids": rows})
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora_config(p))
    trainer.remove_callback(PrinterCallback)
    if device == "cuda": torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    est = estimate_memory(cfg, args, lora=p.lora, dtype=p.torch_dtype, seq_len=L)
    rec = dict(profile=p.name, device=torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
               tiny=a.tiny, attn_implementation=attn, steps=a.steps, per_device_train_batch_size=args.per_device_train_batch_size,
               max_length=L, packing=bool(args.packing), checkpointing=bool(args.activation_checkpointing),
               estimate_total_gib=round(est.total_gib, 2), estimate_without_overhead_gib=round(est.total_gib - est.overhead_gib, 2),
               estimate_states_gib=round(est.states_gib, 2), estimate_activations_gib=round(est.activations_gib, 2),
               peak_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
               peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2) if device == "cuda" else None,
               seconds=round(seconds, 1), versions={m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft")})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f: f.write(json.dumps(rec) + "\n")
    print(f"| {rec['profile']} | {rec['device']} | {rec['attn_implementation']} | {rec['per_device_train_batch_size']}×{L} | "
          f"{rec['estimate_without_overhead_gib']} | {rec['peak_allocated_gib']} | {rec['estimate_total_gib']} | {rec['peak_reserved_gib']} |")
    return rec


if __name__ == "__main__": main()
