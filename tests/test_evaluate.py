"""Chapter 6 (evaluate / evaltools): checks and reports on bad input, the adapter switched off is the base model, and
the mini-project end to end: adherence improves after a short LoRA run, the harness runs on the local task offline,
and the merged model reloads and answers like the adapter model."""
import json

import pytest

from sft_course.errors import ConfigError, DataValidationError, SFTCourseError
from sft_course.evaluate import (EMPTY_REASONING, JSON_KEYS, JSON_SYSTEM, TOPIC_TASK, AdherenceReport, all_of,
                                 compare_generations, complete_model_card, ends_with_eos, format_adherence, json_keys,
                                 json_prompt, json_task, matches, valid_json, write_topic_task)

# The mini-project's settings, as chapter 6 trains them (the notebook uses seed 0; this test another seed).
STEPS, LR, SEED = 200, 5e-3, 1
MAX_NEW_TOKENS = 96


# --- checks and reports: fast --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, contains", [([], "no outputs"), ("one output", "not a list"), (None, "not a list"),
                                           ([{"no": "text"}], r"outputs\[0\]"), ([1, 2], r"outputs\[0\]")])
def test_format_adherence_rejects_bad_outputs(bad, contains):
    with pytest.raises(DataValidationError, match=contains): format_adherence(bad, valid_json())


@pytest.mark.parametrize("check", ["valid JSON", 3, None, []])
def test_format_adherence_rejects_what_is_not_a_check(check):
    with pytest.raises(ConfigError): format_adherence(["{}"], check)


def test_bad_check_arguments_are_course_errors():
    for make in (lambda: json_keys(), lambda: json_keys("topic", 3), lambda: matches("(unclosed"), lambda: matches(None),
                 lambda: all_of()):
        with pytest.raises(SFTCourseError): make()
    with pytest.raises(ConfigError, match="not True or False"): format_adherence(["x"], lambda o: "yes")
    with pytest.raises(DataValidationError, match="details=True"): format_adherence(["x"], ends_with_eos())
    with pytest.raises(DataValidationError, match="2 prompts for 1 outputs"): format_adherence(["x"], valid_json(), ["a", "b"])


def test_checks_look_at_the_answer_after_the_reasoning():
    think = "let me see {not json}\n</think>\n\n"
    ok = {"text": think + '{"topic": "capitals", "answer": "Tokyo."}', "ended": True, "new_tokens": 20}
    loop = {"text": think + '{"topic": "capitals", "answer": "Tok Tok Tok', "ended": False, "new_tokens": 96}
    plain = {"text": "Tokyo.", "ended": True}
    r = format_adherence([ok, loop, plain], all_of(ends_with_eos(), json_keys(*JSON_KEYS)))
    assert isinstance(r, AdherenceReport) and r.passed == [True, False, False] and r.share == pytest.approx(1 / 3)
    assert r.reasons[1] == "ends with the end token: no end token after 96 new tokens"
    assert r.reasons[2].startswith("JSON object with keys topic, answer: not JSON")
    with pytest.raises(DataValidationError): ends_with_eos()("Tokyo.")  # a plain string does not say how it ended
    assert matches(r"\d+")("</think>\n\n42") and not matches(r"\d+")("</think>\n\n42 apples")
    assert json_keys("topic", exact=False)('{"topic": 1, "extra": 2}') and not json_keys("topic")('{"topic": 1, "extra": 2}')
    md = format_adherence([ok["text"], "nope | pipe"], valid_json(), prompts=["q1", "q2"])._repr_markdown_()
    assert "1 of 2 outputs pass (50%)" in md and "nope \\| pipe" in md and "| 1 | q2 |" in md


def test_json_task_rows_fold_the_instruction_and_open_with_the_empty_reasoning_block(sample):
    "No system turn (DeepSeek-R1-Distill's model card): the instruction opens the user turn; answers open with chapter 2's block."
    from sft_course.data import EMPTY_REASONING as CHAPTER_2_BLOCK
    assert EMPTY_REASONING == CHAPTER_2_BLOCK == "<think>\n</think>\n\n"
    task = json_task(sample["test"])
    assert len(task) == len(sample["test"])
    for row, original in zip(task, sample["test"]):
        user, assistant = row["messages"]
        question = next(m["content"] for m in original["messages"] if m["role"] == "user")
        assert user == {"role": "user", "content": f"{JSON_SYSTEM}\n\n{question}"} and assistant["role"] == "assistant"
        assert json_prompt(question) == [user]
        assert assistant["content"].startswith(EMPTY_REASONING)
        value = json.loads(assistant["content"][len(EMPTY_REASONING):])
        assert sorted(value) == ["answer", "topic"] and value["topic"] == row["source"] and "</think>" not in value["answer"]
    assert json_task(sample["test"], system="Answer in JSON.")[0]["messages"][0]["content"].startswith("Answer in JSON.\n\n")
    with pytest.raises(DataValidationError): json_task([{"messages": [{"role": "user", "content": "hi"}]}])


def test_training_text_continues_the_prompts_of_generation_and_of_the_harness(sample, offline_dir, tmp_path):
    "Rendered for training, each row starts with its generation prompt (token for token) and with the harness's prompt."
    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template
    from sft_course.data import template_parity
    tok = AutoTokenizer.from_pretrained(offline_dir)
    task = json_task(sample["test"])
    report = template_parity(task, tok, max_length=256)
    assert report.ok and report.summary["answers_in_parity"] == len(task), report.summary
    write_topic_task(task, tok, tmp_path)
    docs = [json.loads(line) for line in (tmp_path/f"{TOPIC_TASK}.jsonl").read_text().splitlines()]
    template = get_training_chat_template(tok)
    for row, doc in zip(task, docs, strict=True):
        text = tok.apply_chat_template(row["messages"], tokenize=False, chat_template=template)
        assert doc["prompt"].endswith('<｜Assistant｜><think>\n</think>\n\n{"topic": "') and text.startswith(doc["prompt"])


def test_complete_model_card_needs_a_draft(tmp_path):
    with pytest.raises(SFTCourseError, match="create_model_card"):
        complete_model_card(tmp_path, "m", "data", "use", {"acc": 0.5})


# --- the adapter switched off is the base model ----------------------------------------------------------------------

PROMPTS = ["What is the capital of Japan?", "What is 12 plus 30?", "Define the term 'epoch'."]


def test_adapter_off_answers_equal_the_base_models(offline_dir):
    "A LoRA adapter with random (non-zero) weights changes the answers; switched off, the answers are the base model's."
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from sft_course.train import generate
    tok = AutoTokenizer.from_pretrained(offline_dir)
    base = AutoModelForCausalLM.from_pretrained(offline_dir)
    want = [generate(base, tok, p, 24) for p in PROMPTS]
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(offline_dir),
                          LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False))
    cmp = compare_generations(lora, tok, PROMPTS, max_new_tokens=24)
    assert [o["text"] for o in cmp.base] == want
    assert [o["text"] for o in cmp.tuned] != want
    assert cmp.prompts == PROMPTS and all(set(o) >= {"text", "ended", "new_tokens"} for o in cmp.tuned)
    lora.train(); base.train()
    full = compare_generations(lora, tok, PROMPTS, base_model=base, max_new_tokens=24)
    assert [o["text"] for o in full.base] == want
    assert lora.training and base.training  # both models are left in the mode they were in
    with pytest.raises(ConfigError, match="no LoRA adapter"): compare_generations(base, tok, PROMPTS)
    with pytest.raises(DataValidationError): compare_generations(lora, tok, [])
    with pytest.raises(DataValidationError): compare_generations(lora, tok, "What is the capital of Japan?")


# --- the mini-project end to end: slow -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    from sft_course.data import sample_dataset
    return sample_dataset()


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory, offline_dir):
    "The mini-project's LoRA run (chapter 6's settings, seed SEED), the base answers generated before it, and the prompts."
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed
    from trl import SFTConfig, SFTTrainer
    from sft_course.train import generate
    tok = AutoTokenizer.from_pretrained(offline_dir)
    model = AutoModelForCausalLM.from_pretrained(offline_dir)
    test = json_task(sample["test"])
    prompts = [r["messages"][:-1] for r in test]
    before = [generate(model, tok, p, MAX_NEW_TOKENS) for p in prompts[:5]]
    set_seed(SEED)
    args = SFTConfig(output_dir=str(tmp_path_factory.mktemp("json-task")), max_steps=STEPS, per_device_train_batch_size=8,
                     learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=25, save_strategy="no",
                     report_to="none", assistant_only_loss=True, max_length=256, bf16=False, seed=SEED, disable_tqdm=True)
    peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", modules_to_save=["lm_head"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=json_task(sample["train"]), processing_class=tok,
                         peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return dict(trainer=trainer, tokenizer=tok, test=test, prompts=prompts, before=before)


@pytest.mark.slow
def test_adherence_improves_after_training(trained):
    "Before: no answer is JSON with the keys; after the short LoRA run most are, and the adapter-off answers did not move."
    cmp = compare_generations(trained["trainer"].model, trained["tokenizer"], trained["prompts"], max_new_tokens=MAX_NEW_TOKENS)
    assert [o["text"] for o in cmp.base[:5]] == trained["before"]
    before, after = cmp.adherence(json_keys(*JSON_KEYS))
    ended_before, ended_after = cmp.adherence(ends_with_eos())
    print(f"seed {SEED}: json_keys {before.share:.2f} -> {after.share:.2f}, ends {ended_before.share:.2f} -> {ended_after.share:.2f}")
    # Measured with seeds 0 to 4: json_keys 0 -> 0.17 to 0.55 (0.28 with seed 1), ends 0 -> 0.20 to 0.63 (0.28 with seed 1).
    assert before.share == 0 and after.share >= 0.1
    assert ended_after.share > ended_before.share + 0.1


@pytest.mark.slow
def test_lm_eval_runs_on_the_local_task_offline(trained, tmp_path):
    "lm-evaluation-harness reads the local YAML + JSONL and scores the topic task: near chance before, well above after."
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    model = trained["trainer"].model.eval()
    write_topic_task(trained["test"], trained["tokenizer"], tmp_path)
    lm, tm = HFLM(pretrained=model, tokenizer=trained["tokenizer"], batch_size=16), TaskManager(include_path=str(tmp_path))
    run = lambda: lm_eval.simple_evaluate(model=lm, tasks=[TOPIC_TASK], task_manager=tm, bootstrap_iters=0,
                                          log_samples=False, verbosity="ERROR")["results"][TOPIC_TASK]
    with model.disable_adapter(): before = run()
    after = run()
    print(f"{TOPIC_TASK} acc: {before['acc,none']:.3f} -> {after['acc,none']:.3f}")
    assert before["sample_len"] == after["sample_len"] == len(trained["test"])
    # 60 questions: at least 7 more right than the base model (measured with seeds 0 to 4: 0.067 -> 0.27 to 0.45; 0.45 with seed 1).
    assert after["acc,none"] > before["acc,none"] + 0.1


@pytest.mark.slow
def test_merged_model_reloads_and_answers_like_the_adapter_model(trained, tmp_path):
    "merge_and_unload folds the adapters in; saved and loaded back, the model gives the same greedy answer."
    from transformers import AutoModelForCausalLM
    from sft_course.train import generate
    trainer, tok = trained["trainer"], trained["tokenizer"]
    fixed = json_prompt("What is the capital of Japan?")
    adapter_answer = generate(trainer.model, tok, fixed, max_new_tokens=64)
    trainer.create_model_card(model_name="stand-in-json-topics")
    card = complete_model_card(trainer.args.output_dir, "stand-in-json-topics", data="The JSON task.", intended_use="Teaching.",
                               results={"JSON adherence": 0.5})
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(tmp_path/"merged")
    tok.save_pretrained(tmp_path/"merged")
    card.save(tmp_path/"merged"/"README.md")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path/"merged")
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    assert generate(reloaded, tok, fixed, max_new_tokens=64) == adapter_answer
    text = (tmp_path/"merged"/"README.md").read_text()
    assert "## Intended use\n\nTeaching." in text and "model-index" in text and "| JSON adherence | 0.500 |" in text
