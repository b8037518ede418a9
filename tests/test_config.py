"Chapter 3: parameters read from the installed code, profiles, make_config's errors, bad values, every check_config rule, plan, memory, explorer."
import dataclasses, math, os, time, warnings
from pathlib import Path

import pytest, torch
from hypothesis import HealthCheck, given, settings, strategies as st
from trl import SFTConfig

from sft_course import config as C
from sft_course.config import (PARAMETERS, PROFILES, RENAMED, CHECKS, DEEPSEEK_MODEL_ID, DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG,
                               LORA_DEFAULTS, ConfigIssue, Profile, check_config, check_profile, config_explorer, estimate_memory,
                               explain, lora_config, make_config, padding_share, plan, target_env)
from sft_course.environment import PROFILE_NAMES, check_environment
from sft_course.errors import ConfigError, HardwareError, SFTCourseError

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def envs():
    "Reports for this CPU machine, a Colab T4 and an A100, built the way chapter 0 teaches."
    cpu = dataclasses.replace(check_environment(check_hub=False), device="cpu", gpu_name=None, compute_capability=None,
                              vram_gb=None, bf16_native=False, flash_attention=None)
    t4 = dataclasses.replace(cpu, device="cuda", gpu_name="Tesla T4", compute_capability=(7, 5), vram_gb=14.7, bf16_native=False)
    a100 = dataclasses.replace(t4, gpu_name="NVIDIA A100-SXM4-80GB", compute_capability=(8, 0), vram_gb=79.2,
                               bf16_native=True, flash_attention="flash_attention_2")
    l4 = dataclasses.replace(t4, gpu_name="NVIDIA L4", compute_capability=(8, 9), vram_gb=22.0, bf16_native=True)
    return dict(cpu=cpu, t4=t4, a100=a100, l4=l4)


# ---------------------------------------------------------------- defaults and explain

def test_changed_defaults_are_read_from_the_installed_dataclasses():
    assert set(C.changed_defaults()) == {"learning_rate", "logging_steps", "gradient_checkpointing", "bf16"}
    for name, p in PARAMETERS.items():
        f = C._fields()[name]
        declared = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert p.trl_default == declared, name


def test_parameter_table_follows_the_library(monkeypatch):
    "If TRL changed a default tomorrow, the course's table would show the new one: nothing is typed in twice."
    f = C._fields()["learning_rate"]
    monkeypatch.setattr(f, "default", 1e-3)
    assert PARAMETERS["learning_rate"].trl_default == 1e-3
    assert "`0.001`" in PARAMETERS["learning_rate"].default_text()


def test_every_group_is_taught_and_every_parameter_exists():
    assert {p.group for p in PARAMETERS.values()} == set(C.GROUPS)
    for must in ("num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
                 "warmup_steps", "logging_steps", "eval_steps", "save_steps", "eval_strategy", "max_length", "packing",
                 "padding_free", "assistant_only_loss", "completion_only_loss", "bf16", "fp16", "activation_checkpointing", "report_to"):
        assert must in PARAMETERS and must in C._fields(), must
    md = PARAMETERS["bf16"]._repr_markdown_()
    assert "`None` → `True`" in md and "transformers: `False`" in md


@pytest.mark.parametrize("old,new", [("evaluation_strategy", "eval_strategy"), ("max_seq_length", "max_length"),
                                     ("tokenizer", "processing_class"), ("warmup_ratio", "warmup_steps"),
                                     ("group_by_length", "train_sampling_strategy"), ("gradient_checkpointing", "activation_checkpointing")])
def test_explain_renamed(old, new):
    e = explain(old)
    assert (e.kind, e.current) == ("renamed", new)
    assert f"`{new}`" in e._repr_markdown_()


def test_explain_unknown_and_plain_fields():
    e = explain("learning_rte")
    assert e.kind == "unknown" and e.suggestions[0] == "learning_rate" and "learning_rate" in e._repr_markdown_()
    assert explain("eval_stratgy").suggestions[0] == "eval_strategy"
    assert explain("zzzz").suggestions == [] and explain("zzzz").kind == "unknown"
    assert explain("neftune_noise_alpha").kind == "field"
    assert explain("packing").kind == "parameter"


def test_removed_names_really_are_gone():
    fields = C._fields()
    for r in RENAMED.values():
        assert (r.old in fields) == r.accepted, r.old
        assert r.new is None or r.new in fields or r.new == "processing_class", r.new


# ---------------------------------------------------------------- profiles and make_config

def test_profiles_interface():
    assert tuple(PROFILES) == PROFILE_NAMES
    for p in PROFILES.values():
        assert isinstance(p, Profile) and p.torch_dtype in ("float32", "float16", "bfloat16") and p.attn_implementation
        assert "report_to" not in p.args and "disable_tqdm" not in p.args and p.args.get("save_total_limit")
    assert PROFILES["cpu-quick"].model == "offline"
    assert PROFILES["colab-t4-lora"].model == PROFILES["gpu-lora"].model == PROFILES["gpu-full"].model == DEEPSEEK_MODEL_ID
    assert PROFILES["gpu-lora"].torch_dtype == "bfloat16" and PROFILES["gpu-lora"].lora == LORA_DEFAULTS
    assert lora_config("gpu-full") is None and lora_config(PROFILES["cpu-quick"]) is None
    lc = lora_config("colab-t4-lora")
    assert type(lc).__name__ == "LoraConfig" and lc.r == LORA_DEFAULTS["r"]


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_make_config_builds_every_profile(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # profiles set activation_checkpointing: no deprecation warning
        args = make_config(name, check_hardware=False)
    assert isinstance(args, SFTConfig) and args.output_dir == f"runs/{name}"
    assert not (args.fp16 and args.bf16) and args.report_to == ([] if C.default_report_to() == "none" else ["trackio"])


def test_report_to_is_the_learners_choice(monkeypatch):
    "Every profile logs to default_report_to(): $SFT_COURSE_REPORT_TO if set, else trackio where installed, else none."
    import importlib.util
    monkeypatch.delenv(C.REPORT_TO_VAR, raising=False)
    want = "trackio" if importlib.util.find_spec("trackio") else "none"
    assert C.default_report_to() == want
    assert make_config("cpu-quick").report_to == ([] if want == "none" else [want])
    monkeypatch.setenv(C.REPORT_TO_VAR, "tensorboard")
    assert make_config("cpu-quick").report_to == ["tensorboard"] and make_config("cpu-quick", report_to="none").report_to == []
    assert make_config("cpu-quick").project == "sft-course"


def test_cpu_quick_is_fp32_and_fits_a_short_run(tmp_path):
    args = make_config("cpu-quick", output_dir=str(tmp_path), disable_tqdm=True)
    assert (args.bf16, args.fp16, args.use_cpu, args.max_length) == (False, False, False, 512)
    assert args.train_sampling_strategy == "group_by_length" and args.disable_tqdm is True
    p = plan(args, 480)
    assert p.total_steps == 480 and args.save_total_limit
    assert p.eval_at == p.save_at == list(range(60, 481, 60)) and p.n_logs == 48


def test_gpu_profiles_pick_their_precision_and_batches():
    t4, full = make_config("colab-t4-lora", check_hardware=False), make_config("gpu-full", check_hardware=False)
    assert (t4.fp16, t4.bf16, t4.activation_checkpointing, t4.packing, t4.train_sampling_strategy) == (True, False, True, False, "group_by_length")
    assert (full.bf16, full.fp16, full.packing, full.packing_strategy) == (True, False, True, "bfd")
    assert PROFILES["gpu-full"].attn_implementation == "flash_attention_2" and PROFILES["colab-t4-lora"].attn_implementation == "sdpa"


@pytest.mark.skipif(not NO_CUDA, reason="checks what a machine without CUDA refuses")
def test_gpu_profiles_need_check_hardware_false_on_a_cpu():
    for name in ("colab-t4-lora", "gpu-lora", "gpu-full"):
        with pytest.raises(HardwareError, match="check_hardware=False"): make_config(name)
    with pytest.raises(HardwareError, match="bf16"): make_config("cpu-quick", bf16=True)  # transformers would refuse too
    with pytest.raises(ValueError, match="bf16"): SFTConfig(output_dir="x", bf16=True, activation_checkpointing=False)


def test_make_config_auto(envs):
    assert make_config("auto", env=envs["cpu"]).output_dir == "runs/cpu-quick"
    t4 = make_config("auto", env=envs["t4"], check_hardware=False)
    assert t4.output_dir == "runs/colab-t4-lora" and t4.fp16
    assert make_config("auto", env=envs["a100"], check_hardware=False).output_dir == "runs/gpu-full"
    assert make_config("auto", env=envs["l4"], check_hardware=False).output_dir == "runs/gpu-lora"


@pytest.mark.parametrize("old,new", [("evaluation_strategy", "eval_strategy"), ("max_seq_length", "max_length"),
                                     ("warmup_ratio", "warmup_steps"), ("tokenizer", "processing_class"),
                                     ("group_by_length", "train_sampling_strategy"), ("gradient_checkpointing", "activation_checkpointing"),
                                     ("overwrite_output_dir", "output_dir"), ("no_cuda", "use_cpu")])
def test_old_names_become_config_errors(old, new):
    with pytest.raises(ConfigError) as e: make_config("cpu-quick", **{old: 1})
    assert not isinstance(e.value, TypeError)
    assert e.value.where == f"make_config('cpu-quick', {old}=...)" and new in e.value.fix


def test_typos_and_trl_rejections_become_config_errors():
    with pytest.raises(ConfigError, match="learning_rate"): make_config("cpu-quick", learning_rte=1e-3)
    with pytest.raises(ConfigError) as e: make_config("cpu-quick", logging_steps=2.5)  # transformers: must be an integer
    assert e.value.where == "logging_steps" and "logging_steps=2.5" in e.value.what and "logging_steps=10" in e.value.fix
    # what only transformers checks is reported as transformers' refusal (it used to say "TRL rejects")
    with pytest.raises(ConfigError) as e: make_config("cpu-quick", dataloader_prefetch_factor=2)
    assert e.value.what.startswith("transformers rejects") and e.value.where == "dataloader_prefetch_factor"
    with pytest.raises(ConfigError) as e: make_config("cpu-quick", eval_steps=50, save_steps=75, load_best_model_at_end=True)
    assert e.value.where == "save_steps" and "multiple" in e.value.fix
    with pytest.raises(ConfigError, match="cpu-quick"): make_config("cpu-qiuck")


# ---------------------------------------------------------------- check_config: one trigger and one clean case per rule

BASE = dict(PROFILES["cpu-quick"].args, learning_rate=1e-3)  # clean on a CPU with the 480 sample rows (cpu-quick's own 4e-3
# is for the random stand-in, outside the ranges for pretrained models: check_profile leaves that rule out for it)


def _without(d, *keys): return {k: v for k, v in d.items() if k not in keys}


# rule: (config that triggers it, context), (config that does not, context); context: check_config keyword arguments,
# with env given by name
CASES = {
    "eval-steps-without-eval": ((dict(BASE, eval_strategy="no"), {}), (BASE, {})),
    "eval-without-dataset": ((BASE, dict(has_eval_dataset=False)), (dict(BASE, eval_strategy="no"), dict(has_eval_dataset=False))),
    "best-model-mismatch": ((dict(BASE, load_best_model_at_end=True, save_steps=75), {}),
                            (dict(BASE, load_best_model_at_end=True, save_steps=120), {})),
    "bf16-unsupported": ((dict(BASE, bf16=True), dict(env="t4")), (dict(BASE, bf16=True), dict(env="a100"))),
    "fp16-and-bf16": ((dict(BASE, fp16=True, bf16=True), dict(env="a100")), (dict(BASE, fp16=True), dict(env="t4"))),
    "fp16-on-cpu": ((dict(BASE, fp16=True), dict(env="cpu")), (dict(BASE, fp16=True), dict(env="t4"))),
    "fp16-on-bf16-gpu": ((dict(BASE, fp16=True), dict(env="a100")), (dict(BASE, fp16=True), dict(env="t4"))),
    "max-steps-and-epochs": ((dict(BASE, max_steps=100), {}), (dict(_without(BASE, "num_train_epochs"), max_steps=100), {})),
    "warmup-too-long": ((dict(BASE, warmup_steps=500), {}), (dict(BASE, warmup_steps=100), {})),
    "logging-steps-too-large": ((dict(BASE, logging_steps=500), {}), (dict(BASE, logging_steps=180), {})),
    "eval-steps-too-large": ((dict(BASE, eval_steps=500, save_steps=500), {}), (dict(BASE, eval_steps=90, save_steps=90), {})),
    "save-steps-too-large": ((dict(BASE, save_steps=481), {}), (dict(BASE, save_steps=480), {})),
    "batch-size-one": ((dict(BASE, per_device_train_batch_size=1), {}),
                       (dict(BASE, per_device_train_batch_size=1, gradient_accumulation_steps=8), {})),
    "learning-rate-range": ((dict(BASE, learning_rate=1e-3), dict(lora=False)), (dict(BASE, learning_rate=1e-3), dict(lora=True))),
    "no-save-limit": ((dict(BASE, save_total_limit=None, save_steps=20), {}), (dict(BASE, save_steps=20), {})),
    "packing-without-flash": ((dict(BASE, packing=True), dict(env="t4")), (dict(BASE, packing=True), dict(env="a100"))),
    "padding-free-needs-packing": ((dict(BASE, padding_free=True), dict(attn_implementation="flash_attention_2")),
                                   (dict(BASE, padding_free=True, max_length=None), dict(attn_implementation="flash_attention_2"))),
    "unknown-argument": ((dict(BASE, max_seq_length=512), {}), (dict(BASE, max_length=512), {})),
    "bad-value": ((dict(BASE, learning_rate=0), {}), (dict(BASE, learning_rate=1e-4), {})),
    "no-plan": ((dict(_without(BASE, "num_train_epochs"), max_steps=100_000_000_000), {}), (dict(_without(BASE, "num_train_epochs"), max_steps=1000), {})),
}


def _run(case, envs):
    args, ctx = case
    ctx = dict(ctx)
    ctx["env"] = envs[ctx.get("env", "cpu")]
    ctx.setdefault("train_size", 480)
    ctx.setdefault("has_eval_dataset", True)
    return check_config(args, **ctx)


def test_every_rule_has_a_case():
    assert set(CASES) == set(CHECKS) | {"unknown-argument", "bad-value", "no-plan"}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_triggers(rule, envs):
    issues = _run(CASES[rule][0], envs)
    hit = [i for i in issues if i.rule == rule]
    assert len(hit) == 1, issues
    i = hit[0]
    assert isinstance(i, ConfigIssue) and i.severity in ("error", "warning", "info") and i.parameter and i.problem and i.fix


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_stays_silent(rule, envs):
    assert rule not in _run(CASES[rule][1], envs).rules


def test_clean_base_and_profiles_have_no_issues(envs):
    assert list(_run((BASE, {}), envs)) == []
    for name in PROFILES: assert list(check_profile(name, n_train=480 if name == "cpu-quick" else 20_000)) == []


def test_learning_rate_rule_for_lora_and_unknown(envs):
    assert "learning-rate-range" in _run((dict(BASE, learning_rate=1e-7), dict(lora=True)), envs).rules
    assert "learning-rate-range" in _run((dict(BASE, learning_rate=1e-2), {}), envs).rules
    assert "learning-rate-range" not in _run((dict(BASE, learning_rate=2e-5), dict(lora=False)), envs).rules


def test_error_rules_agree_with_trl(tmp_path):
    "What check_config calls an error, TRL or transformers really refuse."
    kw = dict(_without(BASE, "load_best_model_at_end"), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="multiple"): SFTConfig(**dict(kw, load_best_model_at_end=True, save_steps=75))
    with pytest.raises(ValueError): SFTConfig(**dict(kw, fp16=True, bf16=True))
    if NO_CUDA:
        with pytest.raises(ValueError, match="bf16"): SFTConfig(**dict(kw, bf16=True))
        assert "bf16-unsupported" in check_config(dict(kw, bf16=True)).rules  # env=None: this machine


def test_padding_free_error_agrees_with_sfttrainer(tmp_path):
    from trl import SFTTrainer
    from sft_course.offline import offline_model_and_tokenizer
    from sft_course.data import sample_dataset
    model, tok = offline_model_and_tokenizer()
    args = make_config("cpu-quick", check_hardware=False, output_dir=str(tmp_path)) 
    args.padding_free = True  # make_config would refuse it; set it after building, as learners do
    assert "padding-free-needs-packing" in check_config(args).rules
    with pytest.raises(ValueError, match="padding_free"):
        SFTTrainer(model=model, args=args, train_dataset=sample_dataset()["train"], processing_class=tok)


def test_check_config_reads_a_built_config_too(tmp_path):
    args = make_config("cpu-quick", output_dir=str(tmp_path))
    assert check_config(args, train_size=480, has_eval_dataset=True).rules == {"learning-rate-range"}  # the stand-in's 4e-3
    args.learning_rate = 1e-3
    assert list(check_config(args, train_size=480, has_eval_dataset=True)) == []
    args.save_steps = 75
    args.load_best_model_at_end = True
    issues = check_config(args, train_size=480)
    assert "best-model-mismatch" in issues.rules and issues.errors
    md = issues._repr_markdown_()
    assert "| error | `save_steps` |" in md and not hasattr(issues, "to_html")  # one display: markdown


# ---------------------------------------------------------------- plan

def test_plan_arithmetic_matches_transformers():
    args = make_config("gpu-full", check_hardware=False)
    p = plan(args, 20_000)
    assert (p.effective_batch_size, p.steps_per_epoch, p.total_steps) == (16, 1250, 1250)
    assert p.warmup_steps == math.ceil(1250 * 0.03) == args.get_warmup_steps(1250)
    assert p.eval_interval == 125 and p.n_evals == 10 and p.save_interval == 250 and p.n_checkpoints == 5
    steps = plan(dict(BASE, max_steps=100), 480)
    assert steps.total_steps == 100 and steps.epochs == pytest.approx(100 / 60)
    assert plan(dict(BASE, max_steps=100), None).epochs is None
    with pytest.raises(ConfigError, match="n_train"): plan(BASE, None)
    odd = plan(dict(BASE, gradient_accumulation_steps=7, dataloader_drop_last=True), 481)
    assert odd.steps_per_epoch == math.ceil((481 // 8) / 7)


def test_lr_schedule_and_plot():
    p = plan(dict(BASE, lr_scheduler_type="linear", warmup_steps=10), 480)
    lrs = p.lr_schedule()
    assert len(lrs) == p.total_steps and lrs[0] == 0.0 and lrs[10] == pytest.approx(BASE["learning_rate"]) and lrs[-1] < 1e-4
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))
    ax = p.plot_lr()
    assert ax.get_title() and ax.get_xlabel() == "optimizer step" and ax.get_legend() is not None
    assert "| total optimizer steps | 480 |" in p._repr_markdown_()


def test_plan_matches_a_real_run(tmp_path):
    "The plan's logs, evaluations and checkpoints are the ones the Trainer produces."
    from transformers import PrinterCallback
    from trl import SFTTrainer
    from sft_course.offline import offline_model_and_tokenizer
    from sft_course.data import sample_dataset
    ds = sample_dataset()
    model, tok = offline_model_and_tokenizer()
    args = make_config("cpu-quick", output_dir=str(tmp_path), max_steps=25, logging_steps=5, eval_steps=10, save_steps=10,
                       save_total_limit=None, disable_tqdm=True, report_to="none")
    p = plan(args, len(ds["train"]))
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["test"].select(range(16)), processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    hist = trainer.state.log_history
    assert [h["step"] for h in hist if "loss" in h] == p.log_at == [5, 10, 15, 20, 25]
    assert [h["step"] for h in hist if "eval_loss" in h] == p.eval_at == [10, 20, 25]
    saved = sorted(int(d.name.split("-")[1]) for d in tmp_path.glob("checkpoint-*"))
    assert saved == p.save_at == [10, 20, 25]


def test_eval_steps_zero_is_unset_as_in_transformers(tmp_path):
    "transformers reads eval_steps=0 like None (every logging_steps): make_config builds it, and plan and check_config agree."
    args = make_config("cpu-quick", output_dir=str(tmp_path), eval_strategy="steps", eval_steps=0, logging_steps=10)
    assert args.eval_steps == args.logging_steps == 10
    assert C.bad_values(dict(BASE, eval_strategy="steps", eval_steps=0)) == []
    assert plan(dict(BASE, eval_steps=0), 480).eval_at == plan(dict(BASE, eval_steps=None), 480).eval_at
    assert "eval-steps-without-eval" not in check_config(dict(BASE, eval_strategy="no", eval_steps=0), train_size=480, hardware=False).rules


EPOCH_CASES = [dict(n=480, num_train_epochs=3, eval_delay=2), dict(n=480, num_train_epochs=2.5, eval_delay=2.4),
               dict(n=480, num_train_epochs=2.5, eval_delay=2.6), dict(n=100, max_steps=7, gradient_accumulation_steps=3, eval_delay=1.4),
               dict(n=100, max_steps=7, gradient_accumulation_steps=3, eval_delay=1.5), dict(n=100, num_train_epochs=2, eval_delay=1)]


@pytest.mark.parametrize("case", EPOCH_CASES, ids=[str(c) for c in EPOCH_CASES])
def test_plan_counts_eval_delay_in_epochs_as_the_trainer_does(case, tmp_path):
    "With eval_strategy='epoch', DefaultFlowCallback compares eval_delay with the epoch: plan's evaluations are a real Trainer's."
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainerCallback, TrainingArguments
    case = dict(case); n = case.pop("n")
    kw = dict(per_device_train_batch_size=8, eval_strategy="epoch", save_strategy="no", **case)
    class Rows(Dataset):
        def __init__(self, k): self.k = k
        def __len__(self): return self.k
        def __getitem__(self, i): return {"x": torch.tensor([float(i % 7)])}
    class Tiny(torch.nn.Module):
        def __init__(self): super().__init__(); self.w = torch.nn.Linear(1, 1)
        def forward(self, x): return {"loss": self.w(x).pow(2).mean()}
    seen = []
    class Record(TrainerCallback):
        def on_evaluate(self, args, state, control, **_): seen.append(state.global_step)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=True, use_cpu=True, logging_strategy="no", **kw)
    Trainer(model=Tiny(), args=args, train_dataset=Rows(n), eval_dataset=Rows(8), callbacks=[Record()]).train()
    assert plan(kw, n).eval_at == seen


# ---------------------------------------------------------------- memory

def test_deepseek_config_and_parameter_count():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the embedded config uses transformers 5's `dtype`, not the deprecated key
        cfg = Qwen2Config(**DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG)
    with torch.device("meta"): n = sum(p.numel() for p in Qwen2ForCausalLM(cfg).parameters())
    assert n == 1_777_088_000
    m = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["gpu-full"].args, dtype="float32")
    assert m.n_params == n and m.states_gib == pytest.approx(n * 16 / 2**30)


def test_full_fine_tuning_needs_an_a100_and_lora_fits_a_t4():
    full = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["gpu-full"].args, dtype="float32")
    assert 26 < full.states_gib < 27  # 28.4 GB = 26.5 GiB
    assert full.fits == {"T4": False, "L4": False, "A100 40GB": True, "A100 80GB": True, "H100 80GB": True}
    lora = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["colab-t4-lora"].args, lora=LORA_DEFAULTS, dtype="float16")
    assert lora.n_trainable == 18_464_768 and lora.fits["T4"] and lora.total_gib < 10
    assert lora.weights_gib == pytest.approx((n := lora.n_params - lora.n_trainable) * 2 / 2**30 + lora.n_trainable * 4 / 2**30)
    pure_bf16 = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["gpu-full"].args, dtype="bfloat16")
    assert pure_bf16.states_gib == pytest.approx(full.states_gib / 2)
    md = full._repr_markdown_()
    assert "| part | GiB | detail |" in md and "| optimizer state | 13.24 |" in md and "T4 no" in md


def test_checkpointing_and_batch_size_costs():
    args = dict(PROFILES["colab-t4-lora"].args)
    def act(**kw): return estimate_memory(DEEPSEEK_MODEL_ID, dict(args, **kw), lora=LORA_DEFAULTS, dtype="float16")
    on, off = act(), act(activation_checkpointing=False)
    assert on.activations_gib == on.activations_ckpt_gib and off.activations_gib == off.activations_no_ckpt_gib
    assert off.activations_gib > 10 * on.activations_gib
    assert act(per_device_train_batch_size=8, activation_checkpointing=False).activations_gib == pytest.approx(2 * off.activations_gib, rel=1e-6)
    assert not act(per_device_train_batch_size=4, activation_checkpointing=False).fits["T4"]


def test_estimate_memory_accepts_configs_models_and_lora_objects():
    from transformers import Qwen2Config
    from peft import LoraConfig
    from sft_course.offline import offline_model_and_tokenizer
    cfg = Qwen2Config(**DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG)
    a = estimate_memory(cfg, PROFILES["colab-t4-lora"].args, lora=LoraConfig(**LORA_DEFAULTS), dtype="float16")
    b = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["colab-t4-lora"].args, lora=LORA_DEFAULTS, dtype="float16")
    assert a.n_trainable == b.n_trainable and a.total_gib == pytest.approx(b.total_gib)
    model, _ = offline_model_and_tokenizer()
    m = estimate_memory(model, PROFILES["cpu-quick"].args)
    assert m.n_params == sum(p.numel() for p in model.parameters()) and m.weights_dtype == "float32"
    assert estimate_memory("offline", PROFILES["cpu-quick"].args).n_params == m.n_params
    with pytest.raises(ConfigError, match="config"): estimate_memory("no-such-org/no-such-model", BASE)


# ---------------------------------------------------------------- batches

def test_padding_share():
    assert padding_share([5] * 16, 8) == 0.0
    assert padding_share([1, 9] * 8, 2, "random", seed=1) > 0
    lengths = list(range(10, 490))
    assert padding_share(lengths, 8, "group_by_length") < padding_share(lengths, 8, "random")
    with pytest.raises(ConfigError): padding_share(lengths, 8, "sorted")


# ---------------------------------------------------------------- explorer

def test_explorer_updates_when_controls_change():
    ex = config_explorer("cpu-quick")
    assert set(ex.controls) >= {"profile", "batch_size", "accumulation", "max_length", "duration", "epochs", "max_steps", "lora", "n_train"}
    assert "sft-config-explorer-result" in ex.result._dom_classes
    first = ex.markdown
    assert "480" in first and "No issues found" in first
    ex.controls["batch_size"].value = 1
    assert ex.markdown != first and "Effective batch size 1" in ex.markdown
    ex.controls["duration"].value = "steps"
    ex.controls["max_steps"].value = 10
    assert "eval_steps=60 but training lasts 10" in ex.markdown and "max-steps" not in ex.markdown  # steps mode drops the epochs
    ex.controls["profile"].value = "colab-t4-lora"
    assert ex.controls["batch_size"].value == 4 and ex.controls["lora"].value is True
    with_lora = ex.markdown
    assert "Tesla T4" in with_lora and "T4 yes" in with_lora
    ex.controls["lora"].value = False
    assert "T4 no" in ex.markdown
    # what the output shows: the markdown and the learning-rate picture inside the widget, and the picture beside it for GitHub
    assert [o["output_type"] for o in ex.result.outputs] == ["display_data", "display_data"]
    assert "image/png" in ex.result.outputs[1]["data"]
    bundle = ex._repr_mimebundle_()
    assert bundle["image/png"].startswith("iVBORw0K") and "application/vnd.jupyter.widget-view+json" in bundle


# ---------------------------------------------------------------- the promise of cpu-quick

@pytest.mark.slow
def test_cpu_quick_trains_the_standin(tmp_path):
    from transformers import PrinterCallback
    from trl import SFTTrainer
    from sft_course.offline import offline_model_and_tokenizer
    from sft_course.data import sample_dataset
    ds = sample_dataset()
    model, tok = offline_model_and_tokenizer()
    # the profile's settings with plain TRL, for its first two epochs (the whole run is tested in test_train.py and run
    # by chapters 4 and 7): the evaluation and save clocks fire, and the loss falls far below where it started
    args = make_config("cpu-quick", output_dir=str(tmp_path), disable_tqdm=True, report_to="none", max_steps=120)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["test"], processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    first = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2 and evals[-1] < evals[0] and evals[-1] < first - 2.0, (first, evals)
    assert len(list(tmp_path.glob("checkpoint-*"))) == args.save_total_limit


# ---------------------------------------------------------------- bad values (#16): a ConfigError naming parameter, value and fix

BAD = [("learning_rate", -1e-4), ("learning_rate", 0), ("learning_rate", 0.0), ("learning_rate", float("nan")),
       ("learning_rate", float("inf")), ("learning_rate", float("-inf")), ("learning_rate", "2e-4"),
       ("per_device_train_batch_size", 0), ("per_device_train_batch_size", -4), ("per_device_train_batch_size", 2.5),
       ("per_device_train_batch_size", "8"), ("gradient_accumulation_steps", 0), ("gradient_accumulation_steps", -1),
       ("max_length", 0), ("max_length", -512), ("max_length", "1024"), ("num_train_epochs", 0), ("num_train_epochs", -1),
       ("num_train_epochs", float("nan")), ("num_train_epochs", float("inf")), ("max_steps", 0), ("max_steps", -3),
       ("save_steps", 0), ("save_steps", -10), ("eval_steps", -1), ("logging_steps", 0), ("logging_steps", float("inf")),
       ("warmup_steps", -1), ("warmup_steps", 2.5), ("save_total_limit", 0), ("seed", -1), ("bf16", "yes"),
       ("eval_strategy", "sometimes"), ("lr_scheduler_type", "cosin")]


@pytest.mark.parametrize("name,value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_bad_values_are_config_errors_before_anything_is_built(name, value, monkeypatch):
    built = []
    monkeypatch.setattr(C, "SFTConfig", lambda **kw: built.append(kw))
    with pytest.raises(ConfigError) as e: make_config("cpu-quick", **{name: value})
    assert not built  # refused before SFTConfig was called
    assert e.value.where == name and f"{name}={value!r}" in e.value.what and e.value.fix
    issues = check_config(dict(BASE, **{name: value}), train_size=480)
    assert [i.rule for i in issues.errors] == ["bad-value"] and issues.errors[0].parameter == name
    with pytest.raises(ConfigError, match=name): plan(dict(BASE, **{name: value}), 480)
    with pytest.raises(ConfigError, match=name): estimate_memory("offline", dict(BASE, **{name: value}))


def test_check_config_on_batch_zero_reports_instead_of_dividing_by_zero():
    issues = check_config(dict(BASE, per_device_train_batch_size=0, gradient_accumulation_steps=0), train_size=480)
    assert {i.parameter for i in issues} == {"per_device_train_batch_size", "gradient_accumulation_steps"}


def test_plan_refuses_bad_sizes_and_huge_runs_quickly():
    for n in (-10, 0, 2.5, "480", True):
        with pytest.raises(ConfigError, match="n_train"): plan(BASE, n)
    with pytest.raises(ConfigError, match="1,000,000"): plan(dict(BASE, max_steps=100_000_000_000), None)
    with pytest.raises(ConfigError, match="1,000,000"): plan(dict(BASE, num_train_epochs=1e9), 480)
    with pytest.raises(ConfigError, match="world_size"): plan(BASE, 480, world_size=0)
    big = plan(dict(BASE, max_steps=C.MAX_PLAN_STEPS), None)  # the largest plan it makes, and its schedule, stay cheap
    assert big.total_steps == C.MAX_PLAN_STEPS and len(big.lr_schedule([0, 10, C.MAX_PLAN_STEPS - 1])) == 3
    with pytest.raises(ConfigError, match="train_size"): check_config(BASE, train_size=-10)


def test_public_functions_refuse_wrong_types():
    for f in (lambda: make_config(42), lambda: explain(None), lambda: check_config(42), lambda: plan("cpu-quick", 480),
              lambda: estimate_memory(3.5, BASE), lambda: estimate_memory("offline", BASE, seq_len=0),
              lambda: check_config(BASE, env="T4"), lambda: padding_share([5, 6], -1), lambda: C.parameters_table("speed")):
        with pytest.raises(SFTCourseError): f()


# random values: never anything but an SFTCourseError; valid values: never an error
FIELDS = ["learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
          "max_length", "warmup_steps", "logging_steps", "eval_steps", "save_steps", "save_total_limit", "seed", "eval_strategy",
          "save_strategy", "lr_scheduler_type", "fp16", "bf16", "packing", "weight_decay", "max_grad_norm", "load_best_model_at_end"]
ANY = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.none(),
                st.booleans(), st.sampled_from(["steps", "epoch", "no", "cosine", "linear", "0.1", "best"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), ANY, min_size=1, max_size=4), st.one_of(st.none(), st.integers(-5, 10**7)))
def test_random_values_raise_only_course_errors(kw, n_train):
    for call in (lambda: make_config("cpu-quick", check_hardware=False, output_dir="runs/h", **kw),
                 lambda: check_config(dict(BASE, **kw), train_size=n_train if n_train and n_train > 0 else None, hardware=False),
                 lambda: plan(dict(BASE, **kw), n_train),
                 lambda: estimate_memory("offline", dict(BASE, **kw))):
        try: call()
        except SFTCourseError: pass


VALID = st.fixed_dictionaries({}, optional=dict(
    learning_rate=st.floats(1e-7, 1e-1), per_device_train_batch_size=st.integers(1, 64), gradient_accumulation_steps=st.integers(1, 16),
    max_length=st.one_of(st.none(), st.integers(16, 4096)), warmup_steps=st.one_of(st.floats(0, 0.5), st.integers(0, 100)),
    logging_steps=st.one_of(st.integers(1, 100), st.floats(0.01, 1.0)), eval_steps=st.integers(1, 100), save_steps=st.integers(1, 100),
    save_total_limit=st.one_of(st.none(), st.integers(1, 5)), seed=st.integers(0, 2**32 - 1), weight_decay=st.floats(0, 0.1),
    lr_scheduler_type=st.sampled_from(["linear", "cosine", "constant", "constant_with_warmup"])))
DURATION = st.one_of(st.fixed_dictionaries({"num_train_epochs": st.floats(0.1, 5)}), st.fixed_dictionaries({"max_steps": st.integers(1, 5000)}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALID, DURATION, st.integers(1, 20_000))
def test_valid_values_never_raise(kw, duration, n_train):
    kw = dict(kw, **duration)  # one duration: with max_steps, the profile's epochs stay, as with a learner's step budget
    args = make_config("cpu-quick", output_dir="runs/h", **kw)
    p = plan(args, n_train)
    assert p.total_steps >= 1 and len(p.lr_schedule([0, p.total_steps - 1])) == 2
    check_config(args, train_size=n_train, has_eval_dataset=True)
    estimate_memory("offline", args)


# ---------------------------------------------------------------- settings that override each other (#14)

def test_max_steps_with_epochs_is_a_named_warning_and_make_config_refuses_the_pair():
    issues = check_config(dict(BASE, max_steps=100), train_size=480)
    (i,) = [i for i in issues if i.rule == "max-steps-and-epochs"]
    assert i.severity == "warning" and "1.67 epochs of your 480 rows, not 8" in i.problem
    assert "max_steps=-1 to train 8 epochs (480 steps)" in i.fix
    with pytest.raises(ConfigError, match="max_steps") as e: make_config("cpu-quick", num_train_epochs=2, max_steps=50)
    assert "Pass only one" in e.value.fix
    assert make_config("cpu-quick", max_steps=50).max_steps == 50  # a step budget on an epoch profile is what the learner asked for
    assert "max-steps-and-epochs" in check_profile("cpu-quick", n_train=480, max_steps=50).rules  # ... and the check still says so


# ---------------------------------------------------------------- corrected claims of chapter 3 (#13)

def _on_disk(ckpt: Path, names) -> float:
    return sum(f.stat().st_size for f in ckpt.iterdir() if f.name in names) / 2**30


def test_checkpoint_sizes_match_the_files_a_trainer_writes(tmp_path):
    "A full checkpoint holds every weight and its AdamW state; a LoRA one only the adapters' (the old warning said ~21 GB for both)."
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl import SFTTrainer
    from sft_course.offline import offline_model_and_tokenizer
    from sft_course.data import sample_dataset
    train = sample_dataset()["train"].select(range(16))
    for lora, files in ((None, ("model.safetensors", "optimizer.pt")), (LORA_DEFAULTS, ("adapter_model.safetensors", "optimizer.pt"))):
        model, tok = offline_model_and_tokenizer()
        out = tmp_path / ("lora" if lora else "full")
        args = make_config("cpu-quick", output_dir=str(out), max_steps=1, eval_strategy="no", save_steps=1, disable_tqdm=True, report_to="none")
        trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok, peft_config=LoraConfig(**lora) if lora else None)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        predicted = estimate_memory(model if not lora else "offline", args, lora=lora).checkpoint_gib
        on_disk = _on_disk(out / "checkpoint-1", files)  # tensors as predicted, plus file headers (at most 64 KiB here)
        assert predicted * 0.99 <= on_disk <= predicted * 1.01 + 64 * 2**10 / 2**30, (lora, on_disk, predicted)
    sizes = C.checkpoint_sizes()
    assert 19 < sizes["full"] < 21 and 0.15 < sizes["lora"] < 0.25


def test_no_save_limit_warning_quotes_the_size_of_the_run_it_checks(envs):
    args = dict(BASE, save_total_limit=None, save_steps=20)
    lora = [i for i in _run((args, dict(lora=True)), envs) if i.rule == "no-save-limit"][0].problem
    full = [i for i in _run((args, dict(lora=False)), envs) if i.rule == "no-save-limit"][0].problem
    assert "0.21 GiB for LoRA adapters" in lora and "19.9" not in lora
    assert "19.9 GiB for the full model" in full and "GB" not in full.replace("GiB", "")


def test_best_model_rule_names_transformers_not_trl():
    assert "transformers refuses" in CHECKS["best-model-mismatch"].__doc__
    assert not any("TRL refuses" in (f.__doc__ or "") for f in CHECKS.values())


def test_max_length_text_says_what_truncation_does():
    t = PARAMETERS["max_length"].tradeoff
    assert "stop mid-sentence" not in t and "end-of-sentence token" in t


# ---------------------------------------------------------------- profiles: generation, report_to, rehearsal swap (#11, #14)

def test_generation_settings_per_profile():
    for name in ("colab-t4-lora", "gpu-lora", "gpu-full"):
        g = PROFILES[name].generation
        assert (g["do_sample"], g["temperature"], g["top_p"], g["max_new_tokens"]) == (True, 0.6, 0.95, 1024)
    assert PROFILES["cpu-quick"].generation == {"do_sample": False, "max_new_tokens": 64}
    from transformers import GenerationConfig
    for p in PROFILES.values(): GenerationConfig(**p.generation).validate(strict=True)  # real generate() arguments


def test_report_to_follows_what_is_installed(monkeypatch):
    import importlib.util
    monkeypatch.delenv(C.REPORT_TO_VAR, raising=False)  # the test command sets it to 'none'; here the default is under test
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "trackio" else real(name, *a))
    assert C.default_report_to() == "trackio"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name, *a))
    assert C.default_report_to() == "none"
    assert make_config("cpu-quick", report_to="none").report_to == []  # the learner's choice wins


def test_rehearsal_swaps_gpu_profiles_in_one_place(monkeypatch, tmp_path):
    monkeypatch.setenv("SFT_COURSE_REHEARSAL", "1")
    for name in ("colab-t4-lora", "gpu-lora", "gpu-full"):
        p = C.get_profile(name)
        assert p.args["use_cpu"] and p.args["max_steps"] == 2 and not p.args["bf16"] and not p.args["fp16"]
        assert "num_train_epochs" not in p.args and "packing" not in p.args and p.generation["max_new_tokens"] == 64
        assert p.lora == PROFILES[name].lora and p.args["max_length"] == C.REHEARSAL_SWAP["args"]["max_length"] < PROFILES[name].args["max_length"]
        args = make_config(name, output_dir=str(tmp_path))  # builds on this CPU, as the rehearsal needs
        assert args.use_cpu and "max-steps-and-epochs" not in check_config(args, train_size=480).rules
    assert C.get_profile("cpu-quick") is PROFILES["cpu-quick"]


def test_hardware_checks_read_the_env_report_they_are_given(envs):
    "make_config's bf16 decision is the EnvReport's: transformers' own check is asked the same question."
    assert make_config("gpu-full", env=envs["a100"]).bf16 is True  # an A100's report builds bf16, even on this CPU
    with pytest.raises(HardwareError, match="bf16"): make_config("gpu-lora", env=envs["t4"])
    with pytest.raises(HardwareError, match="bf16"): make_config("cpu-quick", bf16=True, env=envs["cpu"])


def test_modules_are_small():
    import sft_course
    for name in ("config", "parameters", "checks", "memory"):
        n = len((Path(sft_course.__file__).parent / f"{name}.py").read_text().splitlines())
        assert n <= 600, (name, n)
