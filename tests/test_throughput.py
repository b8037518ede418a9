"""The throughput benchmark's correctness side: a batch of the course's recipe gives each example the loss it has alone.

No timing is asserted here: speed is the benchmark's job (`python benchmarks/throughput.py`), and only as a ratio."""
import statistics, sys, tempfile, warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/"benchmarks"))
import throughput as tp  # noqa: E402


@pytest.fixture(scope="module")
def standin(offline_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(offline_dir), AutoTokenizer.from_pretrained(offline_dir)


def _prepared(model, tok, rows, **overrides):
    "The rows and the collator exactly as SFTTrainer prepares them for the course's cpu-quick recipe."
    from datasets import Dataset
    from trl import SFTTrainer
    max_length = overrides.pop("max_length", 1024)
    args = tp.build_args("cpu-quick", tempfile.mkdtemp(), 1, max_length, False, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    return list(tr.train_dataset), tr.data_collator


@pytest.fixture(scope="module")
def uneven_rows():
    "Eight sample conversations of clearly different lengths, so that a padded batch of them has padding."
    from sft_course.offline import sample_conversations
    rows = sorted(sample_conversations("train"), key=lambda c: sum(len(m["content"]) for m in c["messages"]))
    return [rows[i] for i in range(0, len(rows), len(rows) // 8)][:8]


def test_padded_batch_matches_examples_alone(standin, uneven_rows):
    model, tok = standin
    rows, collate = _prepared(model, tok, uneven_rows)
    batch = collate(rows)
    lengths = batch["attention_mask"].sum(-1)
    assert "attention_mask" in batch and lengths.min() < lengths.max() / 2  # a real mix: much of the batch is padding
    assert tp.per_example_losses(model, batch).shape == (8,)
    assert tp.loss_check(model, collate, rows) <= tp.LOSS_TOL


def test_padding_free_batch_matches_examples_alone(standin, uneven_rows):
    "One flattened row of 8 examples: sdpa keeps them apart through the position ids (transformers' packed-sequence mask)."
    model, tok = standin
    rows, collate = _prepared(model, tok, uneven_rows, padding_free=True, max_length=None)
    batch = collate(rows)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    assert len(batch["cu_seq_lens_q"]) - 1 == 8
    assert tp.loss_check(model, collate, rows) <= tp.LOSS_TOL


def test_the_check_fails_loudly_when_examples_see_each_other(standin, uneven_rows):
    "Continuous position ids hide the boundaries from the attention: each example then attends to the ones before it."
    model, tok = standin
    rows, collate = _prepared(model, tok, uneven_rows, padding_free=True, max_length=None)
    def leaky(examples):
        b = collate(examples)
        b["position_ids"] = torch.arange(b["input_ids"].shape[1]).unsqueeze(0)
        return b
    with pytest.raises(AssertionError, match="differs from the same example alone"):
        tp.loss_check(model, leaky, rows)


def _fake_varlen(calls, leak=False):
    "A CPU stand-in for torch's CUDA-only varlen_attn: causal sdpa over each example's slice (or over all, when leak)."
    def varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), is_causal=False, **kw):
        assert window_size == (-1, 0) or is_causal, "causal attention must be asked for"
        assert q.shape[1] == k.shape[1], "key/value heads must be repeated for grouped-query attention"
        assert torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32 and max_q == int(cu_q.diff().max())
        calls.append(len(cu_q) - 1)
        cuts = [0, q.shape[0]] if leak else cu_q.tolist()
        sdpa = lambda a, b: torch.nn.functional.scaled_dot_product_attention(
            q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), is_causal=True, scale=scale)
        return torch.cat([sdpa(a, b).transpose(0, 1) for a, b in zip(cuts[:-1], cuts[1:])])
    return varlen_attn


@pytest.mark.parametrize("leak", [False, True])
def test_torch_varlen_attention_keeps_examples_apart(standin, uneven_rows, monkeypatch, leak):
    """register_torch_varlen hands each example's slice of a flattened batch to the varlen kernel (faked here: the real
    one needs CUDA) and matches sdpa's logits; a kernel that ignored the boundaries would fail the loss check."""
    import copy
    import torch.nn.attention.varlen as varlen
    model, tok = standin
    calls = []
    monkeypatch.setattr(varlen, "varlen_attn", _fake_varlen(calls, leak))
    name = tp.register_torch_varlen(f"test_varlen_{leak}")
    vl = type(model)._from_config(copy.deepcopy(model.config), attn_implementation=name)
    vl.load_state_dict(model.state_dict())
    assert vl.config.num_key_value_heads < vl.config.num_attention_heads  # the grouped-query path is exercised
    rows, collate = _prepared(vl, tok, uneven_rows, padding_free=True, max_length=None)
    batch = collate(rows)
    if leak:
        with pytest.raises(AssertionError, match="differs from the same example alone"):
            tp.loss_check(vl, collate, rows)
        return
    assert tp.loss_check(vl, collate, rows) <= tp.LOSS_TOL
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    calls.clear()
    with torch.no_grad():
        diff = (vl(**inputs, use_cache=False).logits - model(**inputs, use_cache=False).logits).abs().max().item()
    # (use_cache=False as in training, where TRL sets it: with a cache, transformers' sdpa mask skips packed-sequence detection)
    assert calls == [8] * vl.config.num_hidden_layers and diff < 1e-5
    calls.clear()
    prows, pcollate = _prepared(model, tok, uneven_rows)
    padded = {k: v for k, v in pcollate(prows[:3]).items() if k != "labels"}  # no cu_seq_lens: sdpa answers it
    assert padded["attention_mask"].float().mean() < 1
    # the same rows padded on the left too, where a missing padding mask would change the real positions
    pads = (padded["attention_mask"] == 0).sum(-1)
    left = {k: torch.stack([r.roll(int(n)) for r, n in zip(padded[k], pads)]) for k in ("input_ids", "attention_mask")}
    for inputs in (padded, left):
        with torch.no_grad():
            a, b = (m(**inputs, use_cache=False).logits for m in (vl, model))
        assert calls == [] and (a - b)[inputs["attention_mask"].bool()].abs().max() < 1e-5


def test_course_order_replays_group_by_length_evenly():
    lengths = tp.smoltalk_like_lengths(2000, seed=3)
    full = tp.course_order(lengths, 8, 10**9)
    assert sorted(full) == list(range(2000))  # a whole epoch: every row once
    picked = tp.course_order(lengths, 8, 25)
    assert len(picked) == 200 and len(set(picked)) == 200
    batches = [full[i:i + 8] for i in range(0, 2000, 8)]
    spread = [batches.index(picked[i:i + 8]) for i in range(0, 200, 8)]
    assert spread == sorted(spread) and spread[0] < 10 and spread[-1] > 240  # from the whole epoch, in order
    # grouping by length removes most of the padding of random batches
    assert tp.padding_of(lengths, 8, full) < 0.1 < 0.4 < tp.padding_of(lengths, 4, list(range(2000)))


def test_smoltalk_like_lengths():
    lengths = tp.smoltalk_like_lengths(4000, hi=4096)
    assert 140 <= statistics.median(lengths) <= 160
    assert sum(l > 1000 for l in lengths) > 20  # the long tail
    assert max(tp.smoltalk_like_lengths(4000)) == 1024  # cut at the seed's max_length by default


def test_synthetic_conversations_have_the_lengths_they_aim_for(standin):
    _, tok = standin
    rows = tp.synthetic_conversations(tok, n=300, seed=5)
    got = tp.token_lengths(rows, tok)
    aim = tp.smoltalk_like_lengths(300, seed=5)
    assert statistics.median(abs(g - a) for g, a in zip(got, aim)) <= 2
    assert got == tp.token_lengths(rows, tok, training_template=False)  # no reasoning: both templates agree


def test_synthetic_lengths_are_aimed_in_the_exact_tokenizer(standin):
    "The smoltalk-like set is built in DeepSeek's own tokens; the stand-in reads the same text in somewhat more."
    from sft_course.replica import deepseek_tokenizer
    exact, (_, tok) = deepseek_tokenizer(), standin
    rows = tp.synthetic_conversations(exact, n=300, seed=5)
    got, aim = tp.token_lengths(rows, exact), tp.smoltalk_like_lengths(300, seed=5)
    assert statistics.median(abs(g - a) for g, a in zip(got, aim)) <= 2
    assert 1.0 < statistics.median(tp.token_lengths(rows, tok)) / statistics.median(got) < 1.3


def test_compare_records_what_the_results_need(standin, tmp_path):
    "A two-step comparison on the stand-in: the fields the committed JSON carries, and the loss check inside it."
    _, tok = standin
    _, cfg, make = tp.standin_factory(None)
    rows = tp.synthetic_conversations(tok, n=400, seed=1)  # enough rows for length groups that hold
    res = tp.compare("smoke", make, cfg, tok, rows, steps=3, reps=1, max_length=1024, course="cpu-quick", log=lambda *a: None,
                     decompose=True)
    for k in ("seed_tokens_per_s", "course_tokens_per_s", "ratio", "max_per_example_loss_diff", "seed_padding_share",
              "course_padding_share", "seed_peak_memory_gib", "course_peak_memory_gib"):
        assert res[k] is not None, k
    assert res["max_per_example_loss_diff"] <= tp.LOSS_TOL
    seed, course = res["runs"]["seed"][0], res["runs"]["course"][0]
    nockpt = res["runs"]["seed_no_checkpointing"][0]
    assert seed["steps"] == course["steps"] == nockpt["steps"] == 3
    # the third run is the seed's recipe with one change: the same batches, so the same tokens and padding
    assert (nockpt["real_tokens"], nockpt["positions"]) == (seed["real_tokens"], seed["positions"])
    assert res["padding_factor"] == pytest.approx((1 - res["course_padding_share"]) / (1 - res["seed_padding_share"]), abs=1e-3)
    assert res["explained_ratio"] == pytest.approx(res["padding_factor"] * res["recompute_factor"], abs=2e-3)
    assert res["recompute_factor"] == pytest.approx(nockpt["tokens_per_s"] / seed["tokens_per_s"], abs=1e-3)
    assert course["real_tokens"] <= course["positions"] and seed["real_tokens"] <= seed["positions"]
    assert res["course_padding_share"] < res["seed_padding_share"]


def test_untimed_steps_leave_the_later_steps_on_the_clock(standin):
    "warmup=k starts the clock after k optimizer steps in both arms (the torch.compile variant skips its compilations)."
    _, tok = standin
    _, cfg, make = tp.standin_factory(None)
    rows = tp.synthetic_conversations(tok, n=400, seed=1)
    res = tp.compare("untimed", make, cfg, tok, rows, steps=4, reps=1, max_length=1024, course="cpu-quick", log=lambda *a: None,
                     check=False, warmup=3)
    assert res["untimed_steps"] == 3
    for arm in ("seed", "course"):
        m = res["runs"][arm][0]
        assert m["steps"] == 4 and len(m["step_wall_s"]) == 4
        assert m["wall_s"] == pytest.approx(m["step_wall_s"][3], abs=2e-3)  # only the fourth step was timed


def test_explore_runs_only_the_variants_asked_for():
    "--variants picks variants by a piece of their name; a name that matches none runs nothing."
    assert tp.explore_cpu(None, None, None, [], 1, 1024, only=["no such variant"]) == {}


def test_committed_result_meets_the_correctness_bar():
    "The committed CPU result: both models measured, every per-example loss difference within 1e-4."
    import json
    res = json.loads((Path(__file__).parents[1]/"benchmarks"/"results"/"throughput_cpu.json").read_text())
    assert set(res["models"]) == {"standin", "hidden512"}
    for m in res["models"].values():
        for k in ("seed_tokens_per_s", "course_tokens_per_s", "ratio", "max_per_example_loss_diff"): assert k in m
        assert m["max_per_example_loss_diff"] <= tp.LOSS_TOL
        assert m["ratio"] == pytest.approx(statistics.median(m["data"][m["headline_data"]]["ratios"]), rel=1e-3)


def _committed_cpu():
    import json
    return json.loads((Path(__file__).parents[1]/"benchmarks"/"results"/"throughput_cpu.json").read_text())


def test_committed_result_splits_the_ratio_into_its_causes():
    "Each measurement carries the third run: checkpointing off alone, less padding alone, and their product."
    for m in _committed_cpu()["models"].values():
        for r in m["data"].values():
            assert len(r["runs"]["seed_no_checkpointing"]) == r["reps"]
            assert r["explained_ratio"] == pytest.approx(r["padding_factor"] * r["recompute_factor"], abs=2e-3)
            assert r["lengths_exact_tokenizer"]["rows"] == r["lengths"]["rows"]
    synth = _committed_cpu()["models"]["hidden512"]["data"]["synthetic"]["lengths_exact_tokenizer"]
    assert 140 <= synth["median"] <= 160 and synth["max"] == 1024  # smoltalk-like, in DeepSeek's own tokens


def test_chapter_3_quotes_the_committed_result():
    "The table and the figures in chapter 3's prose are the committed JSON's, as the chapter rounds them."
    import json
    nb = json.loads((Path(__file__).parents[1]/"nbs"/"03_sft_config.ipynb").read_text())
    text = next("".join(c["source"]) for c in nb["cells"] if "benchmarks/results/throughput_cpu.json" in "".join(c["source"]))
    res = _committed_cpu()["models"]
    for label, key in (("hidden 512", "hidden512"), ("stand-in", "standin")):
        r = res[key]["data"]["synthetic"]
        row = (f"| {label} | {r['seed_tokens_per_s']:,.0f} tokens/s | {r['course_tokens_per_s']:,.0f} tokens/s | "
               f"**{r['ratio']:.2f}x** | {r['seed_padding_share']:.0%} → {r['course_padding_share']:.0%} | "
               f"{r['padding_factor']:.2f}x | {r['recompute_factor']:.2f}x | {r['explained_ratio']:.2f}x |")
        assert row in text, row
    h, s = res["hidden512"]["data"]["synthetic"], res["standin"]["data"]["synthetic"]
    # what the prose says of them: at hidden 512 the two factors account for the ratio; the stand-in falls short
    assert h["ratio"] == pytest.approx(h["explained_ratio"], rel=0.03) and s["ratio"] < s["explained_ratio"]
    for quoted in (f"({h['padding_factor']:.2f}x)", f"worth {h['recompute_factor']:.2f}x",
                   f"({s['ratio']:.2f}x against {s['explained_ratio']:.2f}x)", f"{h['course_padding_share']:.0%} padding left",
                   f"largest difference was {max(h['max_per_example_loss_diff'], s['max_per_example_loss_diff']):.1e}".replace("e-07", "e-7")):
        assert quoted in text, quoted


def test_chapter_3_quotes_the_committed_gpu_result():
    """Chapter 3's GPU figures are those of the committed H200 and H100 runs, which all passed the loss check they quote.
    A run measured in several calls is quoted from the last call that ran it (the sdpa and varlen runs side by side)."""
    import json
    root = Path(__file__).parents[1]
    res = json.loads((root/"benchmarks"/"results"/"throughput_gpu_h200.json").read_text())
    h100 = json.loads((root/"benchmarks"/"results"/"throughput_gpu_h100_varlen.json").read_text())
    runs = {n: r for c in res["calls"] for n, r in c["runs"].items()}
    base, varlen = runs["gpu-full as configured (packing bfd, 2048)"], runs["gpu-full as configured, torch varlen attention"]
    name = "gpu-full, packing 8 x 2048, accumulation 2, no activation checkpointing, Liger kernels, torch varlen attention"
    best = runs[name]
    h100_runs = [c["runs"][name] for c in h100["calls"] if c["runs"].get(name, {}).get("steps") == best["steps"]]
    lo, hi = min(r["mfu"] for r in h100_runs), max(r["mfu"] for r in h100_runs)
    assert res["device"] == "NVIDIA H200" and h100["device"].startswith("NVIDIA H100")
    assert varlen["attn_implementation"] == best["attn_implementation"] == "torch_varlen"
    for r in (base, varlen, best, *h100_runs): assert r["max_per_example_loss_diff"] <= 1e-3
    assert best["per_device_train_batch_size"] * best["gradient_accumulation_steps"] == \
           base["per_device_train_batch_size"] * base["gradient_accumulation_steps"]  # "the same global batch"
    nb = json.loads((root/"nbs"/"03_sft_config.ipynb").read_text())
    text = next("".join(c["source"]) for c in nb["cells"] if "throughput_gpu_h200.json" in "".join(c["source"]))
    text = " ".join(text.split())
    for quoted in (f"{base['tokens_per_s']:,.0f} real tokens/s with sdpa", f"{varlen['tokens_per_s']:,.0f} tokens/s "
                   f"({varlen['tokens_per_s'] / base['tokens_per_s']:.2f}x, at the same {varlen['peak_memory_gib']:.1f} GiB)",
                   f"reached {best['tokens_per_s']:,.0f} tokens/s, {best['mfu']:.1%} of the GPU's bf16 peak, at "
                   f"{best['peak_memory_gib']:.1f} GiB", f"{lo:.1%} to {hi:.1%} in "
                   f"{['no', 'one', 'two', 'three'][len(h100_runs)]} runs of the same {best['steps']} steps",
                   f"has all {sum(len(c['runs']) for c in res['calls'])} runs on the H200"):
        assert quoted in text, quoted
    assert base["peak_memory_gib"] == pytest.approx(varlen["peak_memory_gib"], abs=0.1)


def test_gpu_session_script_runs_its_cpu_smoke_test(tmp_path, offline_dir):
    """The GPU benchmarks run only when a session is lent a GPU, in one prepared call (benchmarks/gpu_session.sh):
    with TINY=1 the same script walks memory_peak.py's and train_throughput.py's whole path on the CPU first."""
    import json, os, subprocess
    env = {**os.environ, "TINY": "1", "OUT": str(tmp_path), "STEPS_train": "2", "OMP_NUM_THREADS": "1",
           "SFT_COURSE_CACHE": str(Path(offline_dir).parent)}
    env.pop("SFT_COURSE_REHEARSAL", None)
    p = subprocess.run(["bash", str(Path(tp.__file__).parent/"gpu_session.sh"), "memory", "train"], capture_output=True,
                       text=True, timeout=900, env=env)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    for name in ("memory_peak.jsonl", "train_throughput.jsonl"):
        rows = [json.loads(l) for l in (tmp_path/name).read_text().splitlines()]
        assert [(r["profile"], r["tiny"]) for r in rows] == [("colab-t4-lora", True), ("gpu-full", True)], name
    assert all(r["tokens_per_s"] > 0 for r in map(json.loads, (tmp_path/"train_throughput.jsonl").read_text().splitlines()))
    assert (tmp_path/"session.log").read_text().count("== exit 0") == 4
