"The environment report: works with no GPU, reads a (simulated) T4 right, never touches the network offline."
import json, os, re, shutil, socket, subprocess, sys
from dataclasses import replace
from types import SimpleNamespace

import huggingface_hub.constants
import pytest, torch
import transformers.utils

import sft_course.machine
from sft_course.environment import EnvReport, check_environment, flash_attention_kernel, hub_status, recommended_profile


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k): raise AssertionError("the environment check tried to open a network connection")
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_report_on_a_cpu(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    env = check_environment()
    assert env.device in ("cpu", "mps") and env.gpu_name is None and env.vram_gb is None and not env.bf16_native
    assert env.hub == "offline"
    assert env.versions["trl"] and env.versions["transformers"] and env.versions["torch"]
    assert recommended_profile(env) == "cpu-quick"
    md = env._repr_markdown_()
    assert "| device |" in md and "cpu-quick" in md
    text = str(env)
    assert "recommended profile: cpu-quick" in text and "HF_HUB_OFFLINE" in text


def test_hub_check_reports_unreachable(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as if imported without HF_HUB_OFFLINE
    def fail(*a, **k): raise OSError("no route")
    monkeypatch.setattr(socket, "create_connection", fail)
    assert check_environment().hub == "unreachable"
    assert check_environment(check_hub=False).hub == "unchecked"


def _simulate_t4(monkeypatch, kernels=True):
    "torch and transformers answering as on Colab's T4: bf16 only through emulation; optionally the kernels package."
    props = SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15_828_320_256)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(transformers.utils, "is_torch_bf16_gpu_available", lambda: True)
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    monkeypatch.setattr(transformers.utils, "is_kernels_available", lambda: kernels)


def test_simulated_t4(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _simulate_t4(monkeypatch)
    env = check_environment()
    assert (env.device, env.gpu_name, env.compute_capability, env.bf16_native) == ("cuda", "Tesla T4", (7, 5), False)
    assert env.bf16_emulated  # transformers accepts bf16=True on a T4 ...
    assert 14 < env.vram_gb < 15
    assert recommended_profile(env) == "colab-t4-lora"
    assert any("fp16" in a for a in env.advice) and any("LoRA" in a for a in env.advice)
    assert any("emulates bf16" in a for a in env.advice)  # ... and the advice says why that is no reason to use it
    assert "| bf16 | `emulated (slow)` |" in env._repr_markdown_()


def test_flash_attention_is_not_claimed_on_a_t4(monkeypatch, no_network):
    "The kernels package imports, but a T4 (7.5) cannot run FlashAttention 2: the report must say no."
    _simulate_t4(monkeypatch, kernels=True)
    assert check_environment(check_hub=False).flash_attention is None
    assert any(a.startswith("No FlashAttention") for a in check_environment(check_hub=False).advice)
    assert [flash_attention_kernel(cc) for cc in (None, (7, 0), (7, 5), (8, 0), (8, 9), (9, 0))] == \
           [None, None, None] + [sft_course.machine.FLASH_ATTN_KERNEL] * 3
    from transformers.modeling_flash_attention_utils import FLASH_ATTN_KERNEL_FALLBACK
    assert sft_course.machine.FLASH_ATTN_KERNEL == FLASH_ATTN_KERNEL_FALLBACK["flash_attention_2"]  # the name transformers loads
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: True)
    assert (flash_attention_kernel((7, 5)), flash_attention_kernel((8, 0))) == (None, "flash_attention_2")
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    monkeypatch.setattr(transformers.utils, "is_kernels_available", lambda: False)
    assert flash_attention_kernel((9, 0)) is None


def test_hub_status_follows_huggingface_hub(monkeypatch, no_network):
    "The offline state is huggingface_hub's, read at its import: a variable changed later does not change it."
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub_status(check=False) == "offline" and check_environment().hub == "offline"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_status(check=False) == "unchecked"


@pytest.mark.parametrize("cc,vram,profile", [((8, 0), 79.2, "gpu-full"), ((9, 0), 79.6, "gpu-full"),
                                             ((8, 0), 39.6, "gpu-full"),  # A100-40GB reports 39.6 GiB
                                             ((8, 9), 22.5, "gpu-lora"), ((8, 9), 23.6, "gpu-lora"),  # L4, RTX 4090
                                             ((7, 0), 31.7, "colab-t4-lora"), ((7, 5), 14.7, "colab-t4-lora")])
def test_profile_rule(cc, vram, profile):
    env = EnvReport(python="3", platform="x", versions={}, device="cuda", compute_capability=cc, vram_gb=vram,
                    bf16_native=cc >= (8, 0), bf16_emulated=cc < (8, 0))
    assert recommended_profile(env) == profile
    # the advice names the same profile, and never the fp16 one for a bf16 GPU
    gpu_lines = " ".join(env.advice)
    assert f"'{profile}'" in gpu_lines
    if env.bf16_native: assert "colab-t4-lora" not in gpu_lines and "fp16" not in gpu_lines


def test_markdown_table_escapes_and_reports_gib():
    env = EnvReport(python="3", platform="x", versions={"trl": "1"}, device="cuda", gpu_name="GPU | with a bar",
                    compute_capability=(8, 9), vram_gb=22.5, bf16_native=True)
    md = env._repr_markdown_()
    assert "GPU \\| with a bar" in md and "| VRAM | `22.5 GiB` |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows and all(len(re.findall(r"(?<!\\)\|", line)) == 3 for line in rows)  # two columns in every row
    assert not hasattr(env, "is_t4_class")


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    exe = shutil.which("sft-course")
    assert exe, "the sft-course console script is not installed (pip install -e .)"
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_env_and_help():
    r = _cli("env")
    assert r.returncode == 0, r.stderr
    assert "recommended profile:" in r.stdout and "device" in r.stdout
    r = _cli("env", "--json")
    assert json.loads(r.stdout)["hub"] == "offline"
    r = _cli("--help")
    assert r.returncode == 0 and "env" in r.stdout
