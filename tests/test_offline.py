"The offline learning stack: stand-in model and tokenizer, DeepSeek's chat template, sample conversations."
import json, math
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
