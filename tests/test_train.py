"The main job: `sft-course train --quick` learns, writes its report, and survives being killed."
import hashlib, json, os, shutil, signal, subprocess, time
from pathlib import Path

import pytest

EXE = shutil.which("sft-course")


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _train(cwd, *args, timeout=900):
    return subprocess.run([EXE, "train", "--quick", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_quick_train_learns_and_writes_its_report(tmp_path):
    r = _train(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path/"runs"/"quick"
    s = json.loads((out/"summary.json").read_text())
    assert s["final_eval_loss"] < s["first_eval_loss"], s
    assert s["final_train_loss"] < s["first_train_loss"], s
    assert s["steps"] == s["max_steps"] and s["tokens"] > 0 and s["peak_memory_gb"] > 0
    png = (out/"loss_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    samples = [json.loads(l) for l in (out/"samples.jsonl").read_text().splitlines()]
    assert {r["step"] for r in samples} and all(r["output"] is not None for r in samples)
    assert "diagnosis" in s and (out/"diagnosis.md").read_text().strip()
    assert (out/"final"/"model.safetensors").exists()
    assert str(out/"loss_curve.png").split("runs/")[1] in r.stdout  # it says where things are


def _digest(d:Path):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_sigkill_then_resume_from_the_checkpoint(tmp_path):
    out = tmp_path/"run"
    p = subprocess.Popen([EXE, "train", "--quick", "--max-steps", "120", "--output-dir", str(out)], cwd=tmp_path,
                         env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (out/"checkpoint-50"/"trainer_state.json").exists():
        assert p.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL); p.wait()
    complete = sorted(c for c in out.glob("checkpoint-*") if (c/"trainer_state.json").exists())
    before = {c.name: _digest(c) for c in complete}
    assert "checkpoint-120" not in before

    r = _train(tmp_path, "--max-steps", "120", "--output-dir", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out/"summary.json").read_text())
    assert s["resumed_from"] == complete[-1].name and f"resumed from {complete[-1].name}" in r.stdout
    assert s["steps"] == 120
    state = json.loads((out/"checkpoint-100"/"trainer_state.json").read_text())
    assert state["global_step"] == 100
    for name, digest in before.items(): assert _digest(out/name) == digest, f"{name} changed after resuming"


def test_new_run_refuses_to_overwrite_checkpoints(tmp_path):
    out = tmp_path/"run"; (out/"checkpoint-50").mkdir(parents=True)
    (out/"checkpoint-50"/"trainer_state.json").write_text("{}")
    r = _train(tmp_path, "--no-resume", "--output-dir", str(out), timeout=300)
    assert r.returncode == 2 and "already holds checkpoints" in r.stderr and "fix:" in r.stderr
    assert (out/"checkpoint-50"/"trainer_state.json").read_text() == "{}"
