"""Real (non-padding) tokens per second: the seed's training recipe against the course's, side by side, in one run.

    python benchmarks/throughput.py                      # CPU: both models, both data sets (under 10 minutes on the 2-core development machine)
    python benchmarks/throughput.py --models standin     # only the stand-in
    python benchmarks/throughput.py --explore            # CPU: also the recipe variants the report discusses
    python benchmarks/throughput.py --explore --variants compile   # only the variants whose name holds 'compile'
    python benchmarks/throughput.py --gpu                # CUDA: DeepSeek-R1-Distill-Qwen-1.5B's architecture

The seed's recipe is the example chapter 4 starts from: `SFTConfig(per_device_train_batch_size=4,
learning_rate=5e-5)`, everything else TRL's default (padding to the longest row of each batch, random order,
activation checkpointing on), corrected only as far as needed to run: `bf16=False` on a CPU, where `SFTConfig`
refuses bf16, and no evaluation or saving, which are not part of training throughput. The course's recipe is
`make_config(profile)` for the device (`cpu-quick` on a CPU: batches of 8 grouped by length, no activation
checkpointing; `gpu-full` on a GPU: packing), with the seed's `max_length` so both train on the same tokens.

Same data, same number of optimizer steps, alternating seed, course, seed, course. On a CPU a third run sits in each
round: the seed's recipe with activation checkpointing off (`--no-decompose` drops it). It splits the ratio into its
two causes, measured: the share of real work in a batch (padding) and the recomputation checkpointing adds. Both recipes draw from the
same rows: the course's batches are the ones `train_sampling_strategy="group_by_length"` makes over the whole data
set (transformers' `LengthGroupedSampler`, replayed in that order), `--steps` of them spread evenly over the epoch,
so a short run sees the length mix of a long one; the seed's random sampler draws its `--steps` batches of 4 from
the same rows. Data: the course's sample conversations (480 rows) and a synthetic set with smoltalk-like lengths
(lognormal, median about 150 tokens, a tail to 1,024), measured with the exact DeepSeek-R1-Distill-Qwen-1.5B tokenizer
(`sft_course.replica.deepseek_tokenizer`). The CPU models use the stand-in's 2,053-token vocabulary and read the same
text with its tokenizer, about 15% more tokens (median 173); both length summaries are recorded, and `max_length` cuts in the
model's tokens. On a GPU the model has DeepSeek's vocabulary and reads the exact tokenizer's ids.

Speed is only ever a ratio of runs made side by side in this one process. On a CPU the clock is the process's CPU
time with one thread (`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`): on a machine shared with other jobs, CPU
time is what the work costs, where wall time mostly measures the neighbours (wall-clock numbers are recorded too).
Each run's clock starts after its first optimizer step (two on a GPU), whose one-time costs are not throughput.
Peak memory on a CPU is the resident set's high-water mark during `train()` above the resident set before it
(`/proc/self/clear_refs`), in GiB; on a GPU, `torch.cuda.max_memory_allocated()`, in GiB.

Correctness beside speed: after the timed runs, one batch of the course's recipe goes through the trained model
and each example's mean loss is compared with the same example run alone; a difference above 1e-4 stops the
script with exit status 1.

Writes `benchmarks/results/throughput_cpu.json` (or `throughput_gpu.json`) and prints a table.
"""
import os
for var, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                   ("OMP_NUM_THREADS", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(var, value)

import argparse, ctypes, json, math, platform, random, re, statistics, sys, tempfile, time, warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))  # a checkout without `pip install -e .` (the GPU machine)

RESULTS = Path(__file__).resolve().parent/"results"
GiB = 2**30
LOSS_TOL = 1e-4
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM
MODEL_KEYS = ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


# ---------------------------------------------------------------- data

def smoltalk_like_lengths(n:int, median:float=150, sigma:float=0.9, lo:int=16, hi:int=1024, seed:int=0) -> list:
    "Target token lengths: lognormal with this median and spread, clipped to [lo, hi] (hi: the seed's max_length)."
    rng = random.Random(seed)
    return [min(hi, max(lo, round(rng.lognormvariate(math.log(median), sigma)))) for _ in range(n)]


def synthetic_conversations(tokenizer, n:int=4000, seed:int=0, **length_kw) -> list:
    "n single-turn conversations whose chat-templated lengths in `tokenizer`'s tokens follow `smoltalk_like_lengths`."
    from sft_course.offline import sample_conversations
    base = sample_conversations("train") + sample_conversations("test")
    prompts = [m["content"] for c in base for m in c["messages"] if m["role"] == "user"]
    text = "\n".join(m["content"] for c in base for m in c["messages"])
    for tag in ("<think>", "</think>"): text = text.replace(tag, "")  # plain answers: every template renders them whole
    corpus = tokenizer(text, add_special_tokens=False)["input_ids"]
    rng = random.Random(seed + 1)
    rows = []
    for target in smoltalk_like_lengths(n, seed=seed, **length_kw):
        user = rng.choice(prompts)
        overhead = len(tokenizer.apply_chat_template([{"role": "user", "content": user}, {"role": "assistant", "content": ""}],
                                                     tokenize=True, return_dict=False))
        k = max(1, target - overhead)
        start = rng.randrange(len(corpus) - k) if len(corpus) > k else 0
        answer = tokenizer.decode((corpus * (1 + k // len(corpus)))[start:start + k]).strip()
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(ids) > k: answer = tokenizer.decode(ids[:k]).strip()  # a cut through a word re-encodes longer: trim back
        answer = answer or "ok"
        rows.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})
    return rows


def token_lengths(rows:list, tokenizer, max_length:int|None=None, training_template:bool=True) -> list:
    "Token length of each row as SFTTrainer renders it, cut at max_length (what the trainer's batches hold)."
    tpl = None
    if training_template:  # assistant_only_loss=True (the course): TRL renders with its training template, which keeps
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers  # the reasoning
        if not has_generation_markers(tokenizer.chat_template): tpl = get_training_chat_template(tokenizer)
    lens = [len(ids) for ids in tokenizer.apply_chat_template([r["messages"] for r in rows], tokenize=True, return_dict=False,
                                                             chat_template=tpl)]
    return [min(l, max_length) for l in lens] if max_length else lens


def length_summary(lengths:list) -> dict:
    q = statistics.quantiles(lengths, n=100)
    return dict(rows=len(lengths), median=statistics.median(lengths), p90=round(q[89]), p99=round(q[98]), max=max(lengths),
                mean=round(statistics.fmean(lengths), 1))


def course_order(lengths:list, batch_size:int, steps:int, seed:int=42) -> list:
    "Row indices of `steps` batches of the group_by_length epoch over all rows, spread evenly over the epoch, in order."
    from transformers.trainer_pt_utils import LengthGroupedSampler
    order = list(LengthGroupedSampler(batch_size, lengths=list(lengths), generator=torch.Generator().manual_seed(seed)))
    batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    if steps < len(batches): batches = [batches[int((i + 0.5) * len(batches) / steps)] for i in range(steps)]
    return [i for b in batches[:steps] for i in b]


def padding_of(lengths:list, batch_size:int, order:list) -> float:
    "Share of padded positions when `order` is cut into batches of `batch_size` and each is padded to its longest row."
    real = padded = 0
    for i in range(0, len(order), batch_size):
        b = [lengths[j] for j in order[i:i + batch_size]]
        real, padded = real + sum(b), padded + max(b) * len(b)
    return 1 - real / padded


# ---------------------------------------------------------------- correctness

def _example_ids(batch) -> torch.Tensor:
    "For every position of a collated batch, the index of the example it belongs to (-1: padding)."
    ids = batch["input_ids"]
    if "attention_mask" in batch:  # padded rows: one example per row
        ex = torch.arange(ids.shape[0]).unsqueeze(1).expand_as(ids).clone()
        ex[batch["attention_mask"].cpu() == 0] = -1
        return ex
    cu = batch.get("cu_seq_lens_q")
    if cu is not None and ids.shape[0] == 1:  # padding-free: the collator's own example boundaries
        return torch.repeat_interleave(torch.arange(len(cu) - 1), cu.diff().cpu()).unsqueeze(0)
    pos = batch["position_ids"].cpu()  # else examples start where the position id restarts at 0
    return (pos == 0).long().cumsum(-1) - 1 + torch.arange(pos.shape[0]).unsqueeze(1) * 10**6  # rows never share an id


def per_example_losses(model, batch) -> torch.Tensor:
    "Mean next-token loss of each example in a collated batch: padded rows, or padding-free rows split where positions restart."
    inputs = {k: (v.to(model.device) if torch.is_tensor(v) else v) for k, v in batch.items() if k in MODEL_KEYS}
    with torch.no_grad(), torch.autocast(model.device.type, enabled=False):
        logits = model(**inputs, use_cache=False).logits.float()
    labels = batch["labels"].to(logits.device)
    tok = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")
    keep = (labels[:, 1:] != -100)
    ex = _example_ids(batch)[:, 1:].to(logits.device)  # the example of each predicted label
    ex = torch.where(keep, ex, torch.full_like(ex, -1))
    uniq = torch.unique(ex[ex >= 0])
    return torch.stack([tok[ex == u].mean() for u in uniq]).cpu()


def loss_check(model, collator, examples:list, tol:float=LOSS_TOL) -> float:
    "Largest |loss in the batch - loss alone| over `examples` (dataset rows); raises AssertionError above `tol`."
    was_training = model.training
    model.eval()
    try:
        together = per_example_losses(model, collator(examples))
        alone = torch.cat([per_example_losses(model, collator([e])) for e in examples])
    finally:
        if was_training: model.train()
    if together.shape != alone.shape:
        raise AssertionError(f"the batch holds {len(together)} examples with loss, the examples alone {len(alone)}")
    diff = float((together - alone).abs().max())
    if not diff <= tol:
        raise AssertionError(f"per-example loss in the batch differs from the same example alone by {diff:.2e} (> {tol:g}): "
                             "the batch lets examples see each other or the padding")
    return diff


# ---------------------------------------------------------------- measuring

def _rss_reset():
    "Return freed heap to the OS, reset the high-water mark, and give the resident set now (bytes); None where unsupported."
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") * 1024
    except OSError: return None

def _status_kib(key):
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


class Meter:
    "Counts what each micro-batch holds (real tokens, positions, attention work) and times optimizer steps."
    def __init__(self, cuda:bool):
        self.cuda, self.real, self.positions, self.attn_sq = cuda, 0, 0, 0
        self.marks = []  # (wall, cpu, real, positions, attn_sq) at the start and after each optimizer step

    def count(self, inputs):
        if "attention_mask" in inputs:
            lens = inputs["attention_mask"].sum(-1).tolist()
        else:
            cu = inputs.get("cu_seq_lens_q")
            lens = cu.diff().tolist() if cu is not None else [inputs["input_ids"].shape[-1]]
            pad = getattr(self, "pad_id", None)
            if pad is not None and cu is None: lens = [int((inputs["input_ids"] != pad).sum())]
        self.real += int(sum(lens)); self.positions += inputs["input_ids"].numel(); self.attn_sq += sum(l * l for l in lens)

    def mark(self):
        if self.cuda: torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), time.process_time(), self.real, self.positions, self.attn_sq))

    def rate(self, warmup:int=0) -> dict:
        "Tokens and seconds after `warmup` optimizer steps."
        a, b = self.marks[min(warmup, len(self.marks) - 2)], self.marks[-1]
        real, pos, sq = b[2] - a[2], b[3] - a[3], b[4] - a[4]
        steps = [round(y[0] - x[0], 3) for x, y in zip(self.marks, self.marks[1:])]
        return dict(wall_s=b[0] - a[0], cpu_s=b[1] - a[1], real_tokens=real, positions=pos, attn_sq=sq,
                    padding_share=round(1 - real / pos, 4) if pos else None, step_wall_s=steps)


def _meter_trainer(trainer, meter):
    from transformers import TrainerCallback
    class _Marks(TrainerCallback):
        def on_train_begin(self, *a, **k): meter.mark()
        def on_step_end(self, *a, **k): meter.mark()
    trainer.add_callback(_Marks())
    step = trainer.training_step
    def training_step(model, inputs, *a, **k):
        meter.count(inputs)
        return step(model, inputs, *a, **k)
    trainer.training_step = training_step


def build_args(recipe:str, out:str, steps:int, max_length:int, cuda:bool, **overrides):
    "SFTConfig of `recipe`: 'seed' (the seed's, as little corrected as runs) or a course profile name."
    from trl import SFTConfig
    from sft_course.config import make_config
    quiet = dict(output_dir=out, max_steps=steps, eval_strategy="no", save_strategy="no", report_to="none",
                 disable_tqdm=True, logging_steps=max(steps, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if recipe == "seed":
            kw = dict(per_device_train_batch_size=4, learning_rate=5e-5, max_length=max_length, seed=42, **quiet)
            if not cuda: kw["bf16"] = False  # SFTConfig refuses its own bf16 default on a CPU
            return SFTConfig(**{**kw, **overrides})
        kw = dict(quiet, max_length=max_length, **overrides)
        if kw.get("packing") is False: kw.setdefault("padding_free", False)
        return make_config(recipe, check_hardware=cuda, **kw)


_PREPARED = {}  # (recipe's data settings, rows) -> the dataset SFTTrainer prepared: tokenized once, reused by every rep

def train_once(model_fn, tokenizer, rows, args, cuda:bool, warmup:int=0, peft_config=None):
    "Train one recipe; returns (trainer, measurements)."
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer
    from sft_course.offline import quiet_progress
    model = model_fn()
    key = (id(rows), len(rows), args.assistant_only_loss, args.max_length, bool(args.packing), args.packing_strategy,
           bool(args.padding_free))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reuse = _PREPARED.get(key) if not (args.packing and args.assistant_only_loss) else None
        trainer = SFTTrainer(model=model, args=args, train_dataset=reuse or Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=peft_config)
    _PREPARED[key] = trainer.train_dataset
    trainer.remove_callback(PrinterCallback)
    meter = Meter(cuda)
    meter.pad_id = tokenizer.pad_token_id
    _meter_trainer(trainer, meter)
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    else: base = _rss_reset()
    with quiet_progress(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    m = meter.rate(warmup)
    if cuda:
        m["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / GiB, 3)
        m["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GiB, 3)
    else:
        m["peak_memory_gib"] = round((_status_kib("VmHWM") * 1024 - base) / GiB, 3) if base is not None else None
    m["steps"] = trainer.state.global_step
    m["final_loss"] = next((r["train_loss"] for r in reversed(trainer.state.log_history) if "train_loss" in r), None)
    return trainer, m


def tokens_per_s(m, cuda:bool) -> float:
    return m["real_tokens"] / (m["wall_s"] if cuda else m["cpu_s"])


# ---------------------------------------------------------------- models

def standin_factory(hidden:int|None):
    "(tokenizer, config, make_model): the offline stand-in, or its architecture at `hidden` (MLP 4x, as the stand-in)."
    from transformers import Qwen2ForCausalLM
    from sft_course.offline import offline_model_and_tokenizer, tiny_qwen2_config
    model, tok = offline_model_and_tokenizer()
    if hidden is not None and hidden != model.config.hidden_size:
        cfg = tiny_qwen2_config(len(tok), tok.bos_token_id, tok.eos_token_id, hidden_size=hidden, intermediate_size=4 * hidden)
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(cfg)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = model.config
    def make():
        m = Qwen2ForCausalLM(cfg)
        m.load_state_dict(state)
        return m
    return tok, cfg, make


def model_flops_per_token(cfg) -> float:
    "6N: training FLOPs per token of the weights (N without the input embedding, a lookup)."
    n = (cfg.num_hidden_layers * (cfg.hidden_size * (cfg.num_attention_heads * _head_dim(cfg)) * 2
                                  + cfg.hidden_size * cfg.num_key_value_heads * _head_dim(cfg) * 2
                                  + 3 * cfg.hidden_size * cfg.intermediate_size)
         + cfg.vocab_size * cfg.hidden_size)
    return 6 * n

def _head_dim(cfg): return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

def attention_flops(cfg, attn_sq:int) -> float:
    "Training FLOPs of causal attention for examples with sum(len^2) = attn_sq: 6 * layers * heads*head_dim * len^2."
    return 6 * cfg.num_hidden_layers * cfg.num_attention_heads * _head_dim(cfg) * attn_sq


# ---------------------------------------------------------------- the comparison

ARMS = {"seed": "the seed's recipe", "seed_no_checkpointing": "the seed's recipe, activation checkpointing off",
        "course": "the course's recipe"}

def compare(name:str, make_model, cfg, tokenizer, rows:list, steps:int, reps:int, max_length:int, course:str,
            cuda:bool=False, course_overrides:dict|None=None, check:bool=True, log=None, decompose:bool=False,
            exact_tokenizer=None, warmup:int|None=None) -> dict:
    "Seed vs course on `rows` for `steps` optimizer steps, alternating, `reps` times each; then the loss check."
    log = log or (lambda *a: print(*a, flush=True))
    warmup = warmup or (2 if cuda else 1)  # the first steps' one-time costs are not throughput
    arms = tuple(ARMS) if decompose else ("seed", "course")
    lengths = token_lengths(rows, tokenizer, max_length)
    probe = build_args(course, tempfile.mkdtemp(), steps, max_length, cuda, **(course_overrides or {}))
    bs = probe.per_device_train_batch_size * probe.gradient_accumulation_steps
    grouped = probe.train_sampling_strategy == "group_by_length" and not probe.packing
    order = course_order(lengths, bs, steps) if grouped else list(range(len(rows)))
    course_rows = [rows[i] for i in order] if grouped else rows
    over = dict(course_overrides or {}, **({"train_sampling_strategy": "sequential"} if grouped else {}))
    seed_rows = course_rows if grouped else rows
    runs = {arm: [] for arm in arms}
    trainer = None
    for rep in range(reps):
        for arm in arms:
            if arm == "course": args = build_args(course, tempfile.mkdtemp(), steps, max_length, cuda, **over)
            else: args = build_args("seed", tempfile.mkdtemp(), steps, max_length, cuda,
                                    **({"gradient_checkpointing": False} if arm == "seed_no_checkpointing" else {}))
            trainer, m = train_once(make_model, tokenizer, course_rows if arm == "course" else seed_rows, args, cuda,
                                    warmup=warmup)
            m["tokens_per_s"] = round(tokens_per_s(m, cuda), 1)
            runs[arm].append(m)
            log(f"  {name} {arm:21} rep {rep + 1}: {m['real_tokens']:>7,} real tokens, padding {m['padding_share']:.0%}, "
                f"{m['cpu_s' if not cuda else 'wall_s']:.1f} s -> {m['tokens_per_s']:,.0f} tok/s, peak {m['peak_memory_gib']} GiB")
    diff = None
    if check:  # the trained course model, one batch of the course's recipe against its examples alone
        batch_rows = list(trainer.train_dataset.select(range(min(bs if grouped else probe.per_device_train_batch_size,
                                                                   len(trainer.train_dataset)))))
        diff = loss_check(trainer.model, trainer.data_collator, batch_rows)
    ts = lambda r: [m["tokens_per_s"] for m in runs[r]]
    ratios = [c / s for s, c in zip(ts("seed"), ts("course"))]
    best = lambda r: max(ts(r))
    res = dict(seed_tokens_per_s=round(statistics.median(ts("seed")), 1), course_tokens_per_s=round(statistics.median(ts("course")), 1),
               ratio=round(statistics.median(ratios), 3), ratios=[round(r, 3) for r in ratios],
               ratio_of_best=round(best("course") / best("seed"), 3),
               seed_padding_share=runs["seed"][0]["padding_share"], course_padding_share=runs["course"][0]["padding_share"],
               seed_peak_memory_gib=max((m["peak_memory_gib"] or 0) for m in runs["seed"]),
               course_peak_memory_gib=max((m["peak_memory_gib"] or 0) for m in runs["course"]),
               max_per_example_loss_diff=diff, steps=steps, reps=reps,
               lengths=length_summary(lengths),
               expected_padding_share=dict(seed=round(_random_padding(lengths, 4), 4),
                                           course=round(padding_of(lengths, bs, course_order(lengths, bs, 10**9)), 4) if grouped else None),
               seed_batch=4, course_batch=bs, course_profile=course, course_overrides=course_overrides or {},
               untimed_steps=warmup, runs=runs)
    if exact_tokenizer is not None: res["lengths_exact_tokenizer"] = length_summary(token_lengths(rows, exact_tokenizer))
    if decompose:  # the ratio, split into what the course's recipe changes: padding, and recomputation
        nockpt = [m["tokens_per_s"] for m in runs["seed_no_checkpointing"]]
        recompute = statistics.median(n / s for n, s in zip(nockpt, ts("seed")))
        padding = (1 - res["course_padding_share"]) / (1 - res["seed_padding_share"])
        res.update(seed_no_checkpointing_tokens_per_s=round(statistics.median(nockpt), 1),
                   recompute_factor=round(recompute, 3), padding_factor=round(padding, 3),
                   explained_ratio=round(recompute * padding, 3),
                   course_vs_seed_no_checkpointing=round(statistics.median(c / n for c, n in zip(ts("course"), nockpt)), 3))
        log(f"  {name}: checkpointing off alone {recompute:.2f}x, less padding alone {padding:.2f}x (real share "
            f"{1 - res['seed_padding_share']:.0%} -> {1 - res['course_padding_share']:.0%}): together {recompute * padding:.2f}x "
            f"expected, {res['ratio']:.2f}x measured")
    log(f"  {name}: course/seed = {res['ratio']:.2f}x (each pair: {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"padding {res['seed_padding_share']:.0%} -> {res['course_padding_share']:.0%}; loss check max diff {diff}")
    return res


def _random_padding(lengths, bs, seed=0):
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    return padding_of(lengths, bs, order)


# ---------------------------------------------------------------- CPU

CPU_MODELS = {"standin": None, "hidden512": 512}


def cpu_main(a):
    torch.set_num_threads(1)
    from sft_course.data import sample_dataset
    import datasets, transformers
    transformers.logging.set_verbosity_error(); datasets.disable_progress_bars()
    t_start = time.perf_counter()
    out = dict(device="cpu", processor=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
               clock="process CPU time, one thread (wall-clock seconds recorded per run)", max_length=a.max_length,
               seed_recipe="SFTConfig(per_device_train_batch_size=4, learning_rate=5e-5, bf16=False): TRL defaults otherwise "
                           "(random order, padding to the longest row, activation checkpointing on)",
               course_recipe="make_config('cpu-quick') with the seed's max_length: batches of 8 grouped by length "
                             "(LengthGroupedSampler order over the whole data set, replayed), no activation checkpointing",
               tokenizer="synthetic lengths aimed in the exact DeepSeek tokenizer's tokens (lengths_exact_tokenizer); the "
                         "models read every row with the stand-in's tokenizer (lengths, cut at max_length)",
               arms=ARMS if a.decompose else {k: ARMS[k] for k in ("seed", "course")},
               versions={m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "datasets")}, models={})
    from sft_course.replica import deepseek_tokenizer
    exact = deepseek_tokenizer()
    rows_by_data = {}
    for model_name in a.models:
        tok, cfg, make = standin_factory(CPU_MODELS[model_name])
        if not rows_by_data:
            rows_by_data = {"samples": list(sample_dataset()["train"]),
                            "synthetic": synthetic_conversations(exact, n=a.synthetic_rows)}
        steps = a.steps_standin if model_name == "standin" else a.steps_hidden512
        res = dict(hidden_size=cfg.hidden_size, layers=cfg.num_hidden_layers, intermediate_size=cfg.intermediate_size,
                   parameters=sum(p.numel() for p in make().parameters()), data={})
        for data in a.data:
            print(f"{model_name} (hidden {cfg.hidden_size}), {data}: {steps} steps x {a.reps} pairs", flush=True)
            res["data"][data] = compare(f"{model_name}/{data}", make, cfg, tok, rows_by_data[data], steps, a.reps,
                                        a.max_length, "cpu-quick", decompose=a.decompose, exact_tokenizer=exact)
            if a.explore:
                res["data"][data]["variants"] = explore_cpu(make, cfg, tok, rows_by_data[data], steps, a.max_length, a.variants)
        main_data = "synthetic" if "synthetic" in res["data"] else a.data[0]
        for k in ("seed_tokens_per_s", "course_tokens_per_s", "ratio", "max_per_example_loss_diff",
                  "seed_padding_share", "course_padding_share", "seed_peak_memory_gib", "course_peak_memory_gib",
                  "recompute_factor", "padding_factor", "explained_ratio"):
            if k in res["data"][main_data]: res[k] = res["data"][main_data][k]
        res["headline_data"] = main_data
        out["models"][model_name] = res
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    return out


COMPILE_UNTIMED = 4  # torch.compile compiles on the first step and again for dynamic shapes when the length changes

def explore_cpu(make, cfg, tok, rows, steps, max_length, only=None):
    "The course's recipe with one thing changed at a time, each against the seed in alternation (one pair each)."
    variants = {
        "batch 16": dict(per_device_train_batch_size=16),
        "checkpointing on": dict(activation_checkpointing=True),
        "padding-free, random order (sdpa, block mask)": dict(padding_free=True, max_length=None, train_sampling_strategy="random"),
        "padding-free, grouped by length (sdpa, block mask)": dict(padding_free=True, max_length=None,
                                                                  train_sampling_strategy="group_by_length"),
        "fused AdamW (optim='adamw_torch_fused')": dict(optim="adamw_torch_fused"),
        "torch.compile (torch_compile=True)": dict(torch_compile=True),
    }
    if only: variants = {k: v for k, v in variants.items() if any(o.lower() in k.lower() for o in only)}
    found = {}
    for name, over in variants.items():
        print(f"  variant: {name}", flush=True)
        ml = over.pop("max_length", max_length) if "max_length" in over else max_length
        rws = rows
        if ml is None:  # padding-free without packing: TRL needs max_length=None, so cut the rows beforehand
            keep = [i for i, l in enumerate(token_lengths(rows, tok)) if l <= max_length]
            rws = [rows[i] for i in keep]
        try:
            warm = COMPILE_UNTIMED if over.get("torch_compile") else None  # both arms: the same steps timed
            found[name] = compare(name, make, cfg, tok, rws, steps, 1, ml, "cpu-quick", course_overrides=over, warmup=warm)
            runs = found[name].pop("runs")
            found[name]["step_wall_s"] = {arm: ms[0]["step_wall_s"] for arm, ms in runs.items()}
        except Exception as e:  # a variant that TRL refuses is a finding, not a crash
            found[name] = dict(error=f"{type(e).__name__}: {str(e)[:300]}")
            print(f"    {found[name]['error']}", flush=True)
    return found


# ---------------------------------------------------------------- GPU

def gpu_main(a, save=None):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from sft_course.config import DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG, PROFILES, estimate_memory, lora_config
    from sft_course.replica import deepseek_tokenizer
    import datasets, transformers
    transformers.logging.set_verbosity_error(); datasets.disable_progress_bars()
    t_start = time.perf_counter()
    tok = deepseek_tokenizer()  # the model's own tokenizer, rebuilt offline
    cfg = Qwen2Config(**DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG)
    rows = synthetic_conversations(tok, n=a.synthetic_rows)
    lengths = token_lengths(rows, tok)
    total = torch.cuda.get_device_properties(0).total_memory
    out = dict(device=torch.cuda.get_device_name(0), peak_bf16_flops=a.peak_flops, data=length_summary(lengths),
               tokenizer="DeepSeek-R1-Distill-Qwen-1.5B's (exact, rebuilt offline)", model="DeepSeek-R1-Distill-Qwen-1.5B's config, random weights",
               flops="6N per real token (N without the input embedding) plus causal attention 6*layers*hidden*len per token; "
                     "activation-checkpointing recomputation not counted (model FLOPs)",
               versions={m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "datasets", "peft")}, runs={})
    flash = _has_flash()
    def make(dtype, attn):
        def f():
            torch.manual_seed(0)
            with torch.device("cuda"): return Qwen2ForCausalLM._from_config(cfg, dtype=dtype, attn_implementation=attn)
        return f
    attn_fa = "flash_attention_2" if flash else "sdpa"
    # the levers, combined into the runs below; overrides' cudnn_sdp switches sdpa's cuDNN backend (off: PyTorch's
    # memory-efficient kernel takes the masks)
    nocudnn, nockpt, liger = dict(cudnn_sdp=False), dict(activation_checkpointing=False), dict(use_liger_kernel=True)
    fused = dict(optim="adamw_torch_fused")
    mb = lambda n: dict(per_device_train_batch_size=n, gradient_accumulation_steps=16 // n)  # n x 2048, global batch 16
    full = lambda name, attn=attn_fa, **over: (name, "gpu-full", torch.float32, attn, over, None, None)
    runs = [  # (name, recipe, dtype, attn, overrides, lora, memory cap)
        ("seed (bf16 autocast, padding, batch 4)", "seed", torch.float32, "sdpa", {}, None, None),
        full("gpu-full as configured (packing bfd, 2048)"),
        full("gpu-full as configured, cuDNN attention off", "sdpa", **nocudnn),
        full("gpu-full, packing, no activation checkpointing", **nockpt),
        full("gpu-full, packing, no activation checkpointing, cuDNN attention off", "sdpa", **nockpt, **nocudnn),
        full("gpu-full, packing 8 x 2048, accumulation 2, no activation checkpointing", **mb(8), **nockpt),
        full("gpu-full, packing 8 x 2048, accumulation 2, checkpointing", **mb(8)),
        full("gpu-full, packing 2 x 2048, accumulation 8, no activation checkpointing", **mb(2), **nockpt),
        full("gpu-full, packing 2 x 2048, accumulation 8, no activation checkpointing, Liger kernels", **mb(2), **nockpt, **liger),
        full("gpu-full, packing, no activation checkpointing, Liger kernels", **nockpt, **liger),
        full("gpu-full, packing 8 x 2048, accumulation 2, no activation checkpointing, Liger kernels", **mb(8), **nockpt, **liger),
        full("gpu-full as configured, torch varlen attention", TORCH_VARLEN),
        full("gpu-full, packing, no activation checkpointing, Liger kernels, torch varlen attention", TORCH_VARLEN,
             **nockpt, **liger),
        full("gpu-full, packing 1 x 2048, accumulation 16, checkpointing", **mb(1)),
        full("gpu-full, packing 1 x 2048, accumulation 16, no activation checkpointing, Liger kernels", **mb(1), **nockpt, **liger),
        # the levers tried on the varlen kernel (benchmarks/README.md, "The levers left")
        full("gpu-full, packing 8 x 2048, accumulation 2, no activation checkpointing, Liger kernels, torch varlen attention",
             TORCH_VARLEN, **mb(8), **nockpt, **liger),
        full("gpu-full, packing, no activation checkpointing, Liger kernels, fused AdamW, torch varlen attention", TORCH_VARLEN,
             **nockpt, **liger, **fused),
        full("gpu-full, packing 8 x 2048, accumulation 2, no activation checkpointing, Liger kernels, fused AdamW, torch varlen "
             "attention", TORCH_VARLEN, **mb(8), **nockpt, **liger, **fused),
        full("gpu-full, packing, checkpointing, Liger kernels, torch varlen attention", TORCH_VARLEN, **liger),
        full("gpu-full, padding-free without packing, torch varlen attention", TORCH_VARLEN,
             packing=False, padding_free=True, max_length=None),
        full("gpu-full, no packing: padded, grouped by length, cuDNN attention off", "sdpa", packing=False, padding_free=False,
             train_sampling_strategy="group_by_length", max_length=1024, **nocudnn),
        full("gpu-full, padding-free without packing", packing=False, padding_free=True, max_length=None),
        ("colab-t4-lora (fp16 base, 15 GB cap)", "colab-t4-lora", torch.float16, "sdpa", {}, "colab-t4-lora", 15e9),
        full("gpu-full, packing with flex_attention", "flex_attention"),
    ]
    if a.only: runs = [r for r in runs if any(s in r[0] for s in a.only)]
    if any(r[3] == TORCH_VARLEN for r in runs): register_torch_varlen()
    for name, recipe, dtype, attn, over, lora, cap in runs:
        print(f"{name}: {a.gpu_steps} steps, {attn}", flush=True)
        over = dict(over)
        cudnn = over.pop("cudnn_sdp", True)
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        ml = over.pop("max_length", PROFILES[recipe].args.get("max_length", 1024) if recipe != "seed" else 1024)
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total) if cap else 1.0)
        try:
            args = build_args(recipe, tempfile.mkdtemp(), a.gpu_steps, ml, True, **over)
            if args.train_sampling_strategy == "group_by_length" and not args.packing:
                bs = args.per_device_train_batch_size * args.gradient_accumulation_steps
                rws = [rows[i] for i in course_order(lengths, bs, a.gpu_steps)]
                args.train_sampling_strategy = "sequential"
            else: rws = rows
            trainer, m = train_once(make(dtype, attn), tok, rws, args, True, warmup=2,
                                    peft_config=lora_config(lora) if lora else None)
            flops = model_flops_per_token(cfg) * m["real_tokens"] + attention_flops(cfg, m["attn_sq"])
            if lora: flops = flops * 2 / 3  # frozen base: no weight gradients (4N instead of 6N)
            m.update(tokens_per_s=round(m["real_tokens"] / m["wall_s"], 1), mfu=round(flops / m["wall_s"] / a.peak_flops, 4),
                     attn_implementation=attn, max_length=ml, per_device_train_batch_size=args.per_device_train_batch_size,
                     gradient_accumulation_steps=args.gradient_accumulation_steps, packing=bool(args.packing),
                     padding_free=bool(args.padding_free), checkpointing=bool(args.activation_checkpointing),
                     memory_cap_gb=cap / 1e9 if cap else None, cudnn_sdp=cudnn)
            est = estimate_memory(cfg, args, lora=PROFILES[lora].lora if lora else None,
                                  dtype="float16" if lora else "float32", seq_len=ml or 1024)
            m["estimate_gib"] = round(est.total_gib, 3)
            m["estimate_without_overhead_gib"] = round(est.total_gib - est.overhead_gib, 3)
            if recipe != "seed" and not lora and a.check:
                batch_rows = list(trainer.train_dataset.select(range(min(4, len(trainer.train_dataset)))))
                try: m["max_per_example_loss_diff"] = loss_check(trainer.model, trainer.data_collator, batch_rows, tol=a.gpu_tol)
                except AssertionError as e: m["loss_check_failed"] = str(e)
            if a.profile and a.profile in name: _profile_steps(trainer, Path(a.out or RESULTS).with_suffix(".profile.txt"))
            del trainer
        except Exception as e:
            m = dict(error=f"{type(e).__name__}: {str(e)[:400]}")
        import gc; gc.collect()  # the trainer holds the model in reference cycles: free it before the next run
        torch.cuda.empty_cache()
        out["runs"][name] = m
        print("  " + json.dumps({k: v for k, v in m.items() if k != "attn_sq"}), flush=True)
        if save: out["wall_s"] = round(time.perf_counter() - t_start, 1); save(out)  # a run cut off keeps the ones before it
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.backends.cuda.enable_cudnn_sdp(True)
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    return out


def _profile_steps(trainer, path, steps:int=2):
    "Two more optimizer steps of `trainer` under torch.profiler; the kernels by GPU time, to `path`."
    from torch.profiler import ProfilerActivity, profile
    trainer.args.max_steps = trainer.state.global_step + steps
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train(resume_from_checkpoint=None)
    path.write_text(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=60))


TORCH_VARLEN = "torch_varlen"

def register_torch_varlen(name:str=TORCH_VARLEN) -> str:
    """Register PyTorch's own variable-length FlashAttention (`torch.nn.attention.varlen.varlen_attn`, CUDA, torch 2.10+)
    with transformers' `AttentionInterface` under `name`, for padding-free batches: TRL's collator flattens a micro-batch
    into one row and passes `cu_seq_lens_q`/`max_length_q`, so each example attends to itself only and no dense mask is
    built. Anything else (a padded batch, generation) falls back to sdpa. Returns `name`, for `attn_implementation`."""
    import inspect
    from torch.nn.attention.varlen import varlen_attn
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    params = inspect.signature(varlen_attn).parameters
    causal = dict(window_size=(-1, 0)) if "window_size" in params else dict(is_causal=True)
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        cu, longest = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
        if cu is None or query.shape[0] != 1 or dropout:
            return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else query.dtype
        q, k, v = (t[0].transpose(0, 1).to(dtype).contiguous() for t in (query, key, value))  # (tokens, heads, head_dim)
        if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves q_heads/kv_heads query heads
            k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
        cu = cu.to(device=q.device, dtype=torch.int32)
        out = varlen_attn(q, k, v, cu, cu, int(longest), int(longest), scale=scaling, **causal)
        return out.unsqueeze(0), None  # (1, tokens, heads, head_dim), as transformers' attention functions return
    def mask(*args, attention_mask=None, **kw):  # padded batches get sdpa's own mask; padding-free ones none at all
        return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kw)
    AttentionInterface.register(name, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, mask)
    return name


def _has_flash() -> bool:
    import importlib.util
    return importlib.util.find_spec("flash_attn") is not None


# ---------------------------------------------------------------- report

def print_table(out):
    if out["device"] == "cpu":
        print("\n| model | data | seed tok/s | course tok/s | ratio | padding seed -> course | checkpointing off alone | "
              "less padding alone | together, expected | peak GiB seed / course | loss diff |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        fx = lambda r, k: f"{r[k]:.2f}x" if k in r else "-"
        for mname, m in out["models"].items():
            for d, r in m["data"].items():
                print(f"| {mname} (h{m['hidden_size']}) | {d} | {r['seed_tokens_per_s']:,.0f} | {r['course_tokens_per_s']:,.0f} | "
                      f"**{r['ratio']:.2f}x** | {r['seed_padding_share']:.0%} -> {r['course_padding_share']:.0%} | "
                      f"{fx(r, 'recompute_factor')} | {fx(r, 'padding_factor')} | {fx(r, 'explained_ratio')} | "
                      f"{r['seed_peak_memory_gib']} / {r['course_peak_memory_gib']} | {r['max_per_example_loss_diff']:.1e} |")
    else:
        print("\n| run | tok/s | MFU | padding | peak GiB | estimate GiB |\n|---|---|---|---|---|---|")
        for name, r in out["runs"].items():
            if "error" in r: print(f"| {name} | error: {r['error'][:80]} |"); continue
            print(f"| {name} | {r['tokens_per_s']:,.0f} | {r['mfu']:.1%} | {r['padding_share']:.0%} | {r['peak_memory_gib']} | {r['estimate_gib']} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(CPU_MODELS), choices=list(CPU_MODELS))
    ap.add_argument("--data", nargs="+", default=["samples", "synthetic"], choices=["samples", "synthetic"])
    ap.add_argument("--reps", type=int, default=2, help="seed/course pairs per model and data set")
    ap.add_argument("--steps-standin", type=int, default=40, help="optimizer steps per run on the stand-in")
    ap.add_argument("--steps-hidden512", type=int, default=12, help="optimizer steps per run at hidden 512")
    ap.add_argument("--synthetic-rows", type=int, default=4000, help="rows of the smoltalk-like set (group_by_length's mega-batches fill at 1,600)")
    ap.add_argument("--max-length", type=int, default=1024, help="both recipes (the seed's TRL default)")
    ap.add_argument("--explore", action="store_true", help="CPU: also measure recipe variants (slower)")
    ap.add_argument("--variants", nargs="*", help="with --explore: only the variants whose name contains one of these")
    ap.add_argument("--no-decompose", dest="decompose", action="store_false",
                    help="CPU: skip the third run per round (the seed's recipe with checkpointing off)")
    ap.add_argument("--gpu", action="store_true", help="CUDA: DeepSeek-R1-Distill-Qwen-1.5B's architecture, gpu-full and colab-t4-lora")
    ap.add_argument("--gpu-steps", type=int, default=12)
    ap.add_argument("--gpu-tol", type=float, default=1e-3, help="loss-check tolerance on a GPU (fp32, TF32 kernels)")
    ap.add_argument("--no-check", dest="check", action="store_false")
    ap.add_argument("--only", nargs="*", help="GPU: run only the runs whose name contains one of these")
    ap.add_argument("--profile", default=None, help="GPU: profile two more steps of the run whose name contains this")
    ap.add_argument("--peak-flops", type=float, default=H100_BF16_PEAK)
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/throughput_{cpu,gpu}.json)")
    a = ap.parse_args(argv)
    if a.gpu and not torch.cuda.is_available(): sys.exit("--gpu needs a CUDA GPU.")
    path = Path(a.out or RESULTS/f"throughput_{'gpu' if a.gpu else 'cpu'}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    save = lambda out: path.write_text(json.dumps(out, indent=1) + "\n")
    try:
        out = gpu_main(a, save) if a.gpu else cpu_main(a)
    except AssertionError as e:
        print(f"\nLOSS CHECK FAILED: {e}", file=sys.stderr)
        return 1
    save(out)
    print_table(out)
    print(f"\nwrote {path} ({out['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__": sys.exit(main())
