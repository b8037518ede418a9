"The environment report: works with no GPU, reads a (simulated) T4 right, never touches the network offline."
import json, os, shutil, socket, subprocess, sys
from types import SimpleNamespace

import pytest, torch

from sft_course.environment import EnvReport, check_environment, recommended_profile


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
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    def fail(*a, **k): raise OSError("no route")
    monkeypatch.setattr(socket, "create_connection", fail)
    assert check_environment().hub == "unreachable"
    assert check_environment(check_hub=False).hub == "unchecked"


def test_simulated_t4(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    props = SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15_828_320_256)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    env = check_environment()
    assert (env.device, env.gpu_name, env.compute_capability, env.bf16_native) == ("cuda", "Tesla T4", (7, 5), False)
    assert 14 < env.vram_gb < 15
    assert recommended_profile(env) == "colab-t4-lora"
    assert any("fp16" in a for a in env.advice) and any("LoRA" in a for a in env.advice)


@pytest.mark.parametrize("cc,vram,profile", [((8, 0), 79.2, "gpu-full"), ((9, 0), 79.6, "gpu-full"),
                                             ((8, 9), 22.5, "gpu-lora"), ((7, 0), 32.0, "colab-t4-lora")])
def test_profile_rule(cc, vram, profile):
    env = EnvReport(python="3", platform="x", versions={}, device="cuda", compute_capability=cc, vram_gb=vram,
                    bf16_native=cc >= (8, 0))
    assert recommended_profile(env) == profile


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
