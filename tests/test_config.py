"Chapter 3: parameters read from the installed code, profiles, make_config's errors, every check_config rule, plan, memory, explorer."
import dataclasses, math, os, time, warnings

import pytest, torch
from trl import SFTConfig

from sft_course import config as C
from sft_course.config import (PARAMETERS, PROFILES, RENAMED, CHECKS, DEEPSEEK_MODEL_ID, DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG,
                               LORA_DEFAULTS, ConfigIssue, Profile, check_config, check_profile, config_explorer, estimate_memory,
                               explain, lora_config, make_config, padding_share, plan, target_env)
from sft_course.environment import PROFILE_NAMES, check_environment
from sft_course.errors import ConfigError, HardwareError

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def envs():
    "Reports for this CPU machine, a Colab T4 and an A100, built the way chapter 0 teaches."
    cpu = dataclasses.replace(check_environment(check_hub=False), device="cpu", gpu_name=None, compute_capability=None,
                              vram_gb=None, bf16_native=False, flash_attention=None)
    t4 = dataclasses.replace(cpu, device="cuda", gpu_name="Tesla T4", compute_capability=(7, 5), vram_gb=14.7, bf16_native=False)
    a100 = dataclasses.replace(t4, gpu_name="NVIDIA A100-SXM4-80GB", compute_capability=(8, 0), vram_gb=79.2,
                               bf16_native=True, flash_attention="flash_attention_2")
    return dict(cpu=cpu, t4=t4, a100=a100)


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
        assert p.args["report_to"] == "none" and "disable_tqdm" not in p.args and p.args.get("save_total_limit")
    assert PROFILES["cpu-quick"].model == "offline"
    assert PROFILES["colab-t4-lora"].model == PROFILES["gpu-full"].model == DEEPSEEK_MODEL_ID
    assert lora_config("gpu-full") is None and lora_config(PROFILES["cpu-quick"]) is None
    lc = lora_config("colab-t4-lora")
    assert type(lc).__name__ == "LoraConfig" and lc.r == LORA_DEFAULTS["r"]


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_make_config_builds_every_profile(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # profiles set activation_checkpointing: no deprecation warning
        args = make_config(name, check_hardware=False)
    assert isinstance(args, SFTConfig) and args.output_dir == f"runs/{name}"
    assert not (args.fp16 and args.bf16) and args.report_to == []


def test_cpu_quick_is_fp32_and_fits_a_short_run(tmp_path):
    args = make_config("cpu-quick", output_dir=str(tmp_path), disable_tqdm=True)
    assert (args.bf16, args.fp16, args.use_cpu, args.max_length) == (False, False, False, 512)
    assert args.train_sampling_strategy == "group_by_length" and args.disable_tqdm is True
    p = plan(args, 480)
    assert 150 <= p.total_steps <= 300 and args.save_total_limit
    assert p.eval_at == p.save_at == [50, 100, 150, 180] and p.n_logs == 18


def test_gpu_profiles_pick_their_precision_and_batches():
    t4, full = make_config("colab-t4-lora", check_hardware=False), make_config("gpu-full", check_hardware=False)
    assert (t4.fp16, t4.bf16, t4.activation_checkpointing, t4.packing, t4.train_sampling_strategy) == (True, False, True, False, "group_by_length")
    assert (full.bf16, full.fp16, full.packing, full.packing_strategy) == (True, False, True, "bfd")
    assert PROFILES["gpu-full"].attn_implementation == "flash_attention_2" and PROFILES["colab-t4-lora"].attn_implementation == "sdpa"


@pytest.mark.skipif(not NO_CUDA, reason="checks what a machine without CUDA refuses")
def test_gpu_profiles_need_check_hardware_false_on_a_cpu():
    for name in ("colab-t4-lora", "gpu-full"):
        with pytest.raises(HardwareError, match="check_hardware=False"): make_config(name)
    with pytest.raises(HardwareError, match="bf16"): make_config("cpu-quick", bf16=True)  # transformers would refuse too
    with pytest.raises(ValueError, match="bf16"): SFTConfig(output_dir="x", bf16=True, activation_checkpointing=False)


def test_make_config_auto(envs):
    assert make_config("auto", env=envs["cpu"]).output_dir == "runs/cpu-quick"
    t4 = make_config("auto", env=envs["t4"], check_hardware=False)
    assert t4.output_dir == "runs/colab-t4-lora" and t4.fp16
    assert make_config("auto", env=envs["a100"], check_hardware=False).output_dir == "runs/gpu-full"


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
    assert e.value.where == "logging_steps" and "TRL rejects" in e.value.what
    with pytest.raises(ConfigError) as e: make_config("cpu-quick", eval_steps=50, save_steps=75, load_best_model_at_end=True)
    assert e.value.where == "save_steps" and "multiple" in e.value.fix
    with pytest.raises(ConfigError, match="cpu-quick"): make_config("cpu-qiuck")


# ---------------------------------------------------------------- check_config: one trigger and one clean case per rule

BASE = dict(PROFILES["cpu-quick"].args)  # clean on a CPU with the 480 sample rows


def _without(d, *keys): return {k: v for k, v in d.items() if k not in keys}


# rule: (config that triggers it, context), (config that does not, context); context: check_config keyword arguments,
# with env given by name
CASES = {
    "eval-steps-without-eval": ((dict(BASE, eval_strategy="no"), {}), (BASE, {})),
    "eval-without-dataset": ((BASE, dict(has_eval_dataset=False)), (dict(BASE, eval_strategy="no"), dict(has_eval_dataset=False))),
    "best-model-mismatch": ((dict(BASE, load_best_model_at_end=True, save_steps=75), {}),
                            (dict(BASE, load_best_model_at_end=True, save_steps=100), {})),
    "bf16-unsupported": ((dict(BASE, bf16=True), dict(env="t4")), (dict(BASE, bf16=True), dict(env="a100"))),
    "fp16-and-bf16": ((dict(BASE, fp16=True, bf16=True), dict(env="a100")), (dict(BASE, fp16=True), dict(env="t4"))),
    "fp16-on-cpu": ((dict(BASE, fp16=True), dict(env="cpu")), (dict(BASE, fp16=True), dict(env="t4"))),
    "fp16-on-bf16-gpu": ((dict(BASE, fp16=True), dict(env="a100")), (dict(BASE, fp16=True), dict(env="t4"))),
    "max-steps-and-epochs": ((dict(BASE, max_steps=100), {}), (dict(_without(BASE, "num_train_epochs"), max_steps=100), {})),
    "warmup-too-long": ((dict(BASE, warmup_steps=500), {}), (dict(BASE, warmup_steps=100), {})),
    "logging-steps-too-large": ((dict(BASE, logging_steps=500), {}), (dict(BASE, logging_steps=180), {})),
    "eval-steps-too-large": ((dict(BASE, eval_steps=200, save_steps=200), {}), (dict(BASE, eval_steps=90, save_steps=90), {})),
    "save-steps-too-large": ((dict(BASE, save_steps=181), {}), (dict(BASE, save_steps=180), {})),
    "batch-size-one": ((dict(BASE, per_device_train_batch_size=1), {}),
                       (dict(BASE, per_device_train_batch_size=1, gradient_accumulation_steps=8), {})),
    "learning-rate-range": ((dict(BASE, learning_rate=1e-3), dict(lora=False)), (dict(BASE, learning_rate=1e-3), dict(lora=True))),
    "no-save-limit": ((dict(BASE, save_total_limit=None, save_steps=20), {}), (dict(BASE, save_steps=20), {})),
    "packing-without-flash": ((dict(BASE, packing=True), dict(env="t4")), (dict(BASE, packing=True), dict(env="a100"))),
    "padding-free-needs-packing": ((dict(BASE, padding_free=True), dict(attn_implementation="flash_attention_2")),
                                   (dict(BASE, padding_free=True, max_length=None), dict(attn_implementation="flash_attention_2"))),
    "unknown-argument": ((dict(BASE, max_seq_length=512), {}), (dict(BASE, max_length=512), {})),
}


def _run(case, envs):
    args, ctx = case
    ctx = dict(ctx)
    ctx["env"] = envs[ctx.get("env", "cpu")]
    ctx.setdefault("train_size", 480)
    ctx.setdefault("has_eval_dataset", True)
    return check_config(args, **ctx)


def test_every_rule_has_a_case():
    assert set(CASES) == set(CHECKS) | {"unknown-argument"}


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
    assert list(check_config(args, train_size=480, has_eval_dataset=True)) == []
    args.save_steps = 75
    args.load_best_model_at_end = True
    issues = check_config(args, train_size=480)
    assert "best-model-mismatch" in issues.rules and issues.errors
    md = issues._repr_markdown_()
    assert "| error | `save_steps` |" in md and "<td" in issues.to_html()


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
    assert len(lrs) == p.total_steps and lrs[0] == 0.0 and lrs[10] == pytest.approx(2e-3) and lrs[-1] < 1e-4
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))
    ax = p.plot_lr()
    assert ax.get_title() and ax.get_xlabel() == "optimizer step" and ax.get_legend() is not None
    assert "| total optimizer steps | 180 |" in p._repr_markdown_()


def test_plan_matches_a_real_run(tmp_path):
    "The plan's logs, evaluations and checkpoints are the ones the Trainer produces."
    from transformers import PrinterCallback
    from trl import SFTTrainer
    from sft_course.offline import offline_model_and_tokenizer
    from sft_course.data import sample_dataset
    ds = sample_dataset()
    model, tok = offline_model_and_tokenizer()
    args = make_config("cpu-quick", output_dir=str(tmp_path), max_steps=25, logging_steps=5, eval_steps=10, save_steps=10,
                       save_total_limit=None, disable_tqdm=True)
    p = plan(args, len(ds["train"]))
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["test"].select(range(16)), processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    hist = trainer.state.log_history
    assert [h["step"] for h in hist if "loss" in h] == p.log_at == [5, 10, 15, 20, 25]
    assert [h["step"] for h in hist if "eval_loss" in h] == p.eval_at == [10, 20, 25]
    saved = sorted(int(d.name.split("-")[1]) for d in tmp_path.glob("checkpoint-*"))
    assert saved == p.save_at == [10, 20, 25]


# ---------------------------------------------------------------- memory

def test_deepseek_config_and_parameter_count():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the embedded config uses transformers 5's `dtype`, not the deprecated key
        cfg = Qwen2Config(**DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG)
    with torch.device("meta"): n = sum(p.numel() for p in Qwen2ForCausalLM(cfg).parameters())
    assert n == 1_777_088_000
    m = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["gpu-full"].args, dtype="float32")
    assert m.n_params == n and m.states_gb == pytest.approx(n * 16 / 1e9)


def test_full_fine_tuning_needs_an_a100_and_lora_fits_a_t4():
    full = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["gpu-full"].args, dtype="float32")
    assert 27 < full.states_gb < 29
    assert full.fits == {"T4 15GB": False, "A100 40GB": True, "A100 80GB": True, "H100 80GB": True}
    lora = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["colab-t4-lora"].args, lora=LORA_DEFAULTS, dtype="float16")
    assert lora.n_trainable == 18_464_768 and lora.fits["T4 15GB"] and lora.total_gb < 10
    assert lora.weights_gb == pytest.approx((n := lora.n_params - lora.n_trainable) * 2 / 1e9 + lora.n_trainable * 4 / 1e9)
    pure_bf16 = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["gpu-full"].args, dtype="bfloat16")
    assert pure_bf16.states_gb == pytest.approx(full.states_gb / 2)
    md = full._repr_markdown_()
    assert "| optimizer state | 14.22 |" in md and "T4 15GB no" in md


def test_checkpointing_and_batch_size_costs():
    args = dict(PROFILES["colab-t4-lora"].args)
    def act(**kw): return estimate_memory(DEEPSEEK_MODEL_ID, dict(args, **kw), lora=LORA_DEFAULTS, dtype="float16")
    on, off = act(), act(activation_checkpointing=False)
    assert on.activations_gb == on.activations_ckpt_gb and off.activations_gb == off.activations_no_ckpt_gb
    assert off.activations_gb > 10 * on.activations_gb
    assert act(per_device_train_batch_size=8, activation_checkpointing=False).activations_gb == pytest.approx(2 * off.activations_gb, rel=1e-6)
    assert not act(per_device_train_batch_size=4, activation_checkpointing=False).fits["T4 15GB"]


def test_estimate_memory_accepts_configs_models_and_lora_objects():
    from transformers import Qwen2Config
    from peft import LoraConfig
    from sft_course.offline import offline_model_and_tokenizer
    cfg = Qwen2Config(**DEEPSEEK_R1_DISTILL_QWEN_1_5B_CONFIG)
    a = estimate_memory(cfg, PROFILES["colab-t4-lora"].args, lora=LoraConfig(**LORA_DEFAULTS), dtype="float16")
    b = estimate_memory(DEEPSEEK_MODEL_ID, PROFILES["colab-t4-lora"].args, lora=LORA_DEFAULTS, dtype="float16")
    assert a.n_trainable == b.n_trainable and a.total_gb == pytest.approx(b.total_gb)
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
    first = ex.result.value
    assert "180" in first and "No issues found" in first
    ex.controls["batch_size"].value = 1
    assert ex.result.value != first and "Effective batch size 1" in ex.result.value
    ex.controls["duration"].value = "steps"
    ex.controls["max_steps"].value = 10
    assert "eval_steps=50 but training lasts 10" in ex.result.value
    ex.controls["profile"].value = "colab-t4-lora"
    assert ex.controls["batch_size"].value == 4 and ex.controls["lora"].value is True
    with_lora = ex.result.value
    assert "Tesla T4" in with_lora and "T4 15GB yes" in with_lora
    ex.controls["lora"].value = False
    assert "T4 15GB no" in ex.result.value


# ---------------------------------------------------------------- the promise of cpu-quick

@pytest.mark.slow
def test_cpu_quick_trains_the_standin_in_about_two_minutes(tmp_path):
    from transformers import PrinterCallback
    from trl import SFTTrainer
    from sft_course.offline import offline_model_and_tokenizer
    from sft_course.data import sample_dataset
    ds = sample_dataset()
    model, tok = offline_model_and_tokenizer()
    args = make_config("cpu-quick", output_dir=str(tmp_path), disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["test"], processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    print(f"cpu-quick: {seconds:.0f} s, eval loss {evals}")
    assert len(evals) == 4 and evals[-1] < evals[0] - 1.0, evals
    assert seconds < 180, seconds
    assert len(list(tmp_path.glob("checkpoint-*"))) == args.save_total_limit
