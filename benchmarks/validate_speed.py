"""How long `validate` takes on 50,000 conversations, next to tokenizing the same conversations.

    python benchmarks/validate_speed.py [--n 50000] [--repeats 3]

What is compared (same in-memory `Dataset`, same fast tokenizer, one thread):

- tokenize: what SFTTrainer's own preparation does with a conversational dataset, in ONE batched `Dataset.map`
  call: `tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=True)`, i.e. render every
  conversation with the chat template, then tokenize the rendered texts with the fast (Rust) tokenizer, and store
  the token ids. Rendering is part of the baseline because there is no tokenizing a conversation without it.
- validate: `validate(ds, tokenizer, max_length=1024)`: the rows read from the Arrow table, `check_row` on every row
  (the one structural path), duplicate detection with pandas, the render + tokenize pass for the lengths, and the
  sampled assistant share.

The tokenizer is the offline stand-in's (a fast byte-level BPE tokenizer with DeepSeek-R1-Distill's chat template);
the conversations are the course's sample conversations repeated with a row number appended to the first user turn
(so none is a duplicate), one row in 100 given an empty answer so that the report has issues to build.
Each measurement runs `--repeats` times, interleaved, and the best time of each is compared: on a shared machine the
minimum is the least noisy estimate of what the code costs. For information the script also times the checks without
a tokenizer (`validate(ds)`), tokenizing pre-rendered text alone (the tokenizer's share of the baseline) and
`validate(..., assistant_only_loss=True)`.
Exits with status 1 if validate/tokenize is above `--max-ratio` (default 2).
"""
import os
for var, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                   ("OMP_NUM_THREADS", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(var, value)

import argparse, platform, sys, time

import datasets
from datasets import Dataset

from sft_course.data import validate
from sft_course.offline import offline_model_and_tokenizer, sample_conversations


def build(n):
    "n distinct conversations in smoltalk's schema, one in 100 with an empty assistant turn."
    base = sample_conversations("train") + sample_conversations("test")
    rows = []
    for i in range(n):
        msgs = [dict(m) for m in base[i % len(base)]["messages"]]
        first_user = next(k for k, m in enumerate(msgs) if m["role"] == "user")
        msgs[first_user]["content"] += f" (#{i})"
        if i % 100 == 99: msgs[-1]["content"] = ""
        rows.append({"messages": msgs, "source": base[i % len(base)]["source"]})
    return Dataset.from_list(rows)


def timed(fn):
    t = time.perf_counter(); out = fn(); return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-ratio", type=float, default=2.0)
    ap.add_argument("--no-extra", action="store_true", help="skip the informational timings")
    a = ap.parse_args()
    datasets.disable_progress_bars()
    _, tok = offline_model_and_tokenizer()
    ds = build(a.n)
    print(f"{a.n:,} conversations; tokenizer {type(tok).__name__} (fast: {tok.is_fast}); python {platform.python_version()}; "
          f"datasets {datasets.__version__}; {os.cpu_count()} CPU(s) visible")

    tokenize = lambda: ds.map(lambda b: tok.apply_chat_template(b["messages"], tokenize=True, return_dict=True),
                              batched=True, remove_columns=ds.column_names)
    check = lambda: validate(ds, tok, max_length=1024)
    t_tok, t_val = [], []
    for r in range(a.repeats):
        t, out = timed(tokenize); t_tok.append(t)
        t, report = timed(check); t_val.append(t)
        print(f"  run {r + 1}: tokenize {t_tok[-1]:6.2f} s   validate {t_val[-1]:6.2f} s")
    n_tokens = sum(len(x) for x in out["input_ids"])
    assert report.summary["tokens"]["total"] == n_tokens, "validate and the baseline disagree on the token count"
    print(f"  {n_tokens:,} tokens; report: {len(report.issues):,} issues, {report.summary['problems']}")

    if not a.no_extra:
        texts = tok.apply_chat_template(ds[:]["messages"], tokenize=False)
        t_text, _ = timed(lambda: tok(texts, add_special_tokens=False))
        t_aol, _ = timed(lambda: validate(ds, tok, max_length=1024, assistant_only_loss=True))
        t_checks = min(timed(lambda: validate(ds))[0] for _ in range(a.repeats))
        print(f"  for information: checks without a tokenizer {t_checks:6.2f} s; tokenizer on pre-rendered text "
              f"{t_text:6.2f} s; validate(assistant_only_loss=True) {t_aol:6.2f} s")

    ratio = min(t_val) / min(t_tok)
    print(f"best of {a.repeats}: tokenize (Dataset.map, batched) {min(t_tok):.2f} s, validate {min(t_val):.2f} s")
    print(f"validate/tokenize ratio: {ratio:.2f} (limit {a.max_ratio:g})")
    sys.exit(0 if ratio <= a.max_ratio else 1)


if __name__ == "__main__":
    main()
