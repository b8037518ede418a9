"""Tokens per second and peak GPU memory of `run_example` for 30 steps of a course profile, on a model with
DeepSeek-R1-Distill-Qwen-1.5B's exact architecture and random weights (the GPU machine cannot reach the Hub either;
the values of the weights change neither speed nor memory).

    python benchmarks/train_throughput.py --profile colab-t4-lora   # GPU memory capped at 15 GB, as on a T4
    python benchmarks/train_throughput.py --profile gpu-full
    python benchmarks/train_throughput.py --profile gpu-full --tiny --steps 2   # CPU smoke test of this script (no measurement)

The model is saved to a temporary directory and trained through `run_example(model_id=<that directory>)`, so the
measurement covers the course's own loader, checks and trainer. The data are the shipped sample conversations (short:
about 100-400 tokens each), so tokens/s here is for short rows; smoltalk's longer rows give more tokens per step.
Appends one JSON line per run to --out (default benchmarks/results/train_throughput.jsonl). Memory in GiB (2**30 bytes).
"""
import argparse, json, os, platform, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from memory_peak import build_model  # noqa: E402  (same directory)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="colab-t4-lora", choices=["colab-t4-lora", "gpu-full"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--t4-cap-gb", type=float, default=15.0, help="memory cap for colab-t4-lora (0: none)")
    ap.add_argument("--tiny", action="store_true", help="the stand-in on the CPU, with the rehearsal's CPU swap of the profile: "
                                                         "checks the script, measures nothing")
    ap.add_argument("--out", default=str(Path(__file__).parent/"results"/"train_throughput.jsonl"))
    a = ap.parse_args(argv)
    cuda = not a.tiny
    if a.tiny: os.environ["SFT_COURSE_REHEARSAL"] = "1"  # run_example swaps the GPU profile's settings for CPU ones
    elif not torch.cuda.is_available(): sys.exit("No CUDA GPU: run with --tiny for a CPU smoke test.")
    from sft_course.config import PROFILES
    from sft_course.data import sample_dataset
    from sft_course.offline import offline_model_and_tokenizer
    from sft_course.train import run_example

    if cuda and a.profile == "colab-t4-lora" and a.t4_cap_gb:
        total_gb = torch.cuda.get_device_properties(0).total_memory / 1e9
        torch.cuda.set_per_process_memory_fraction(min(1.0, a.t4_cap_gb / total_gb))
    model_dir = Path(tempfile.mkdtemp())/"deepseek-architecture-random"
    model, _, attn = build_model(PROFILES[a.profile], tiny=a.tiny, device="cuda" if cuda else "cpu")
    model.save_pretrained(model_dir)
    offline_model_and_tokenizer()[1].save_pretrained(model_dir)  # ids stay below the model's 151,936-token vocabulary
    del model
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()

    t0 = time.time()
    r = run_example(profile=a.profile, model_id=str(model_dir), dataset=sample_dataset(), max_steps=a.steps,
                    output_dir=tempfile.mkdtemp(), eval_strategy="no", save_strategy="no", disable_tqdm=True)
    wall = time.time() - t0
    logs = [x for x in r.trainer.state.log_history if "num_tokens" in x]
    tokens = logs[-1]["num_tokens"] if logs else None
    row = dict(profile=a.profile, tiny=a.tiny, steps=r.summary["steps"], gpu=torch.cuda.get_device_name(0) if cuda else None,
               attn_implementation=attn, memory_cap_gb=a.t4_cap_gb if cuda and a.profile == "colab-t4-lora" else None,
               train_runtime_s=r.summary["runtime_s"], tokens=tokens,
               tokens_per_s=round(tokens / r.summary["runtime_s"], 1) if tokens else None,
               peak_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
               peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None, wall_s=round(wall, 1),
               torch=torch.__version__, python=platform.python_version())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f: f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__": main()
