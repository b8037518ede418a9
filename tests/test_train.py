"""The main job and its promises: `sft-course train --quick` learns (in its loss and in its answers), writes its report,
survives being killed or interrupted, resumes exactly, and never overwrites or mixes up a learner's work."""
import hashlib, json, os, re, shutil, signal, subprocess, time
from pathlib import Path

import pytest

EXE = shutil.which("sft-course")
# What each watched prompt asks for, as a pattern of the training answers of its kind: a sentence about a capital, a sum
# (or another operation) with its numbers, a definition "A/An X is ...". The stand-in learns these forms, not the facts.
WATCH_SUBJECTS = {"What is the capital of Norway?": r"\bcapital\b",
                  "What is 12 plus 30?": r"\b(sum|plus|product|times|equals|minus|difference)\b|\d\s*[-+×*=]\s*\d",
                  "In simple terms, what is an epoch?": r"^(An?|The) [\w' -]+? (is|are|means|measures|splits)\b"}


def _env(**extra):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **extra}


def _cli(cwd, *args, timeout=900):
    return subprocess.run([EXE, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _train(cwd, *args, timeout=900): return _cli(cwd, "train", "--quick", *args, timeout=timeout)


def good_answer(rec) -> bool:
    "An answer in the form of the training answers: ended at the end-of-sentence token, no loop, about the subject asked."
    from sft_course.monitor import is_looping
    from sft_course.runs import split_reasoning
    answer = split_reasoning(rec["output"])[1]
    return bool(rec["ended"] and answer and not is_looping(rec["output"]) and re.search(WATCH_SUBJECTS[rec["prompt"]], answer))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    "One uninterrupted `sft-course train --quick`, shared by the tests that read it."
    cwd = tmp_path_factory.mktemp("quick")
    r = _train(cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    return cwd, cwd/"runs"/"quick", r


@pytest.mark.slow
def test_quick_train_learns_and_writes_its_report(quick_run):
    cwd, out, r = quick_run
    s = json.loads((out/"summary.json").read_text())
    assert s["final_eval_loss"] < s["first_eval_loss"] and s["final_train_loss"] < s["first_train_loss"], s
    assert s["steps"] == s["max_steps"] and s["tokens"] > 0 and s["peak_memory_gib"] > 0
    png = (out/"loss_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "diagnosis" in s and (out/"diagnosis.md").read_text().strip()
    assert (out/"final"/"model.safetensors").exists()
    assert "runs/quick/loss_curve.png" in r.stdout  # it says where things are
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_quick_run_learns_in_its_answers(quick_run):
    "Issue 11: at the last evaluation at least 2 of the 3 watched prompts get a proper answer; at step 0 none does."
    _, out, _ = quick_run
    recs = [json.loads(l) for l in (out/"samples.jsonl").read_text().splitlines()]
    steps = sorted({r["step"] for r in recs})
    assert steps[0] == 0, steps  # an evaluation before training shows the untrained model
    by = lambda step: [r for r in recs if r["step"] == step]
    assert len(by(steps[-1])) == 3 and sum(map(good_answer, by(steps[-1]))) >= 2, by(steps[-1])
    assert sum(map(good_answer, by(0))) == 0, by(0)
    q = json.loads((out/"summary.json").read_text())["sample_quality"]
    assert q["first"]["step"] == 0 and q["last"]["step"] == steps[-1]
    assert q["last"]["ended"] >= 2/3 and q["last"]["looping"] <= 1/3, q
    assert "ample quality" in (out/"diagnosis.md").read_text()


def _digest(d:Path):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def _final_loss(out):
    logs = json.loads((out/"summary.json").read_text())
    return logs["final_train_loss"]


@pytest.mark.slow
def test_resume_from_every_checkpoint_reproduces_the_run(tmp_path):
    """Issue 16: resuming from each checkpoint reproduces the uninterrupted run's final losses (to 1e-4 on a CPU).
    Checkpoints every 50 steps fall inside epochs 1 and 2 (60 steps each), where transformers' length-grouped sampler
    used to reshuffle differently after a resume; the run ends inside epoch 3."""
    from sft_course.train import run_example
    kw = dict(quick=True, max_steps=130, save_steps=50, eval_steps=50, disable_tqdm=True)
    full = run_example(output_dir=str(tmp_path/"full"), **kw).summary
    cks = sorted((c for c in (tmp_path/"full").glob("checkpoint-*") if int(c.name.split("-")[1]) < 130), key=lambda c: int(c.name.split("-")[1]))
    assert [c.name for c in cks] == ["checkpoint-50", "checkpoint-100"]
    for ck in cks:
        d = tmp_path/ck.name
        shutil.copytree(tmp_path/"full", d)
        for c in d.glob("checkpoint-*"):
            if int(c.name.split("-")[1]) > int(ck.name.split("-")[1]): shutil.rmtree(c)
        s = run_example(output_dir=str(d), **kw).summary
        assert s["resumed_from"] == ck.name and s["steps"] == full["steps"]
        assert abs(s["final_train_loss"] - full["final_train_loss"]) < 1e-4, (ck.name, s["final_train_loss"], full["final_train_loss"])
        assert abs(s["final_eval_loss"] - full["final_eval_loss"]) < 1e-4, (ck.name, s["final_eval_loss"], full["final_eval_loss"])


def _wait_until(ready, p, what, timeout=900):
    "Poll `ready()` while the run `p` is still going; fail if it ends first or takes more than `timeout` seconds."
    deadline = time.time() + timeout
    while not ready():
        assert p.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_then_resume_and_the_runs_that_are_refused(tmp_path):
    """A run killed mid-way resumes from its last complete checkpoint, which the resume leaves untouched. While the first
    run writes, a second run into its directory is refused; after it, a run with other settings is refused naming the
    differing setting. (One run serves all three: each training run costs CI a minute.)"""
    out = tmp_path/"run"
    p = subprocess.Popen([EXE, "train", "--quick", "--max-steps", "120", "--output-dir", str(out)], cwd=tmp_path,
                         env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = out/".sft-course.lock"  # taken before the model loads: the second run starts as early as it can
    _wait_until(lambda: lock.exists() and lock.read_text().strip(), p, "its lock")
    second = _train(tmp_path, "--max-steps", "120", "--output-dir", str(out), timeout=300)
    assert p.poll() is None, "the first run ended before the second was refused: the check proved nothing"
    assert second.returncode == 2 and "Another run" in second.stderr and "Traceback" not in second.stderr, second.stderr
    _wait_until((out/"checkpoint-60"/"trainer_state.json").exists, p, "its first checkpoint")
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL); p.wait()
    with (out/"samples.jsonl").open("a") as f: f.write('{"step": 77, "prompt": "cut off by the ki')  # a write cut by the kill
    from sft_course.runs import checkpoints
    complete = checkpoints(out)
    before = {c.name: _digest(c) for c in complete}

    r = _train(tmp_path, "--max-steps", "120", "--output-dir", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out/"summary.json").read_text())
    assert s["resumed_from"] == complete[-1].name and f"resumed from {complete[-1].name}" in r.stdout
    assert s["steps"] == 120
    for name, digest in before.items(): assert _digest(out/name) == digest, f"{name} changed after resuming"
    steps = [json.loads(l)["step"] for l in (out/"samples.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)) * 3, "each evaluation's samples exactly once"
    other = _train(tmp_path, "--max-steps", "60", "--output-dir", str(out), timeout=300)
    assert other.returncode == 2 and "max_steps: 120 -> 60" in other.stderr, other.stderr
    assert "--output-dir" in other.stderr  # the fix names the flag


def _ctrl_c_reaches_it():
    """In the child before it starts: SIGINT as in a terminal. A shell ignores it for commands it runs in the background
    (`cmd &` without job control), the child would inherit that, and Python then raises no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_names_the_checkpoint(tmp_path):
    out = tmp_path/"run"
    p = subprocess.Popen([EXE, "train", "--quick", "--output-dir", str(out)], cwd=tmp_path, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_reaches_it)
    _wait_until((out/"checkpoint-60"/"trainer_state.json").exists, p, "its first checkpoint")
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "resumes from checkpoint-" in stderr, stderr[-2000:]


def _seed_learner_files(d:Path):
    d.mkdir(parents=True, exist_ok=True)
    files = {"README.md": "# my notes\n", "summary.json": '{"mine": true}\n', "diagnosis.md": "my diagnosis\n"}
    for k, v in files.items(): (d/k).write_text(v)
    return files


def test_learner_files_survive(tmp_path):
    "Issue 16: a run into a directory holding the learner's README.md, summary.json and diagnosis.md refuses and keeps them."
    d = tmp_path/"D"
    files = _seed_learner_files(d)
    r = _train(tmp_path, "--max-steps", "12", "--output-dir", str(d), timeout=300)
    assert r.returncode == 2 and "no run of this course wrote" in r.stderr and "Traceback" not in r.stderr, r.stderr
    for k, v in files.items(): assert (d/k).read_text() == v


def test_new_run_refuses_to_overwrite_checkpoints(tmp_path):
    out = tmp_path/"run"; (out/"checkpoint-50").mkdir(parents=True)
    (out/"checkpoint-50"/"trainer_state.json").write_text("{}")
    r = _train(tmp_path, "--no-resume", "--output-dir", str(out), timeout=300)
    assert r.returncode == 2 and "fix:" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (out/"checkpoint-50"/"trainer_state.json").read_text() == "{}"


@pytest.mark.parametrize("args,expect", [
    (["--max-steps", "0"], "--max-steps"), (["--max-steps", "-3"], "--max-steps"),
    (["--max-steps", "100000000000"], "--max-steps"), (["--profile", "gpu-full"], "--quick"),
    (["--model-id", "x/y"], "--model-id")])
def test_cli_refuses_bad_options_before_loading(tmp_path, args, expect):
    r = _train(tmp_path, *args, "--output-dir", str(tmp_path/"o"), timeout=120)
    assert r.returncode == 2 and expect in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path/"o"/"sft-course-run.json").exists()


@pytest.mark.parametrize("where", ["file", "under_file", "proc", "too_long"])
def test_cli_output_dir_problems(tmp_path, where):
    f = tmp_path/"afile"; f.write_text("x")
    target = {"file": f, "under_file": f/"sub", "proc": Path("/proc/sft-course-run"), "too_long": tmp_path/("x" * 300)}[where]
    r = _train(tmp_path, "--output-dir", str(target), timeout=120)
    assert r.returncode == 2 and "--output-dir" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert f.read_text() == "x"


def test_tilde_after_equals_is_expanded(tmp_path):
    "`--output-dir=~/x` is not expanded by the shell; the command expands it once, so nothing lands in ./~."
    home = tmp_path/"home"; home.mkdir()
    r = subprocess.run([EXE, "train", "--quick", "--max-steps", "0", "--output-dir=~/x"], cwd=tmp_path,
                       env=_env(HOME=str(home)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and not (tmp_path/"~").exists()
    from sft_course.runs import resolve_output_dir
    os.environ["HOME"], old = str(home), os.environ["HOME"]
    try: assert resolve_output_dir("~/x") == home/"x"
    finally: os.environ["HOME"] = old


@pytest.mark.slow
def test_tiny_max_steps_reports_without_a_traceback(tmp_path):
    r = _train(tmp_path, "--max-steps", "5", "--output-dir", str(tmp_path/"o"))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "trained 5 steps" in r.stdout


@pytest.mark.slow
def test_damaged_last_checkpoint_is_skipped(tmp_path):
    "A cut-off optimizer.pt, an empty trainer_state.json or a truncated model in the newest checkpoint: the resume skips it."
    base = tmp_path/"base"
    r = _train(tmp_path, "--max-steps", "70", "--output-dir", str(base))  # checkpoints 60 and 70 (the last step)
    assert r.returncode == 0, r.stderr[-2000:]
    for damage in ("optimizer.pt", "trainer_state.json", "model.safetensors"):
        d = tmp_path/damage
        shutil.copytree(base, d)
        f = d/"checkpoint-70"/damage  # as a kill during the last save leaves it
        f.write_bytes(b"" if damage == "trainer_state.json" else f.read_bytes()[: f.stat().st_size // 3])
        r = _train(tmp_path, "--max-steps", "70", "--output-dir", str(d))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "skipped checkpoint-70" in r.stdout and "resumed from checkpoint-60" in r.stdout, r.stdout


def test_run_example_accepts_each_dataset_form(tmp_path):
    "Issue 10's crash: `load_smoltalk()` returns one Dataset; run_example takes a Dataset, a DatasetDict or a dict of splits."
    from datasets import DatasetDict
    from sft_course.data import sample_dataset
    from sft_course.errors import DatasetFormatError
    from sft_course.train import run_example
    ds = sample_dataset()
    small = DatasetDict({"train": ds["train"].select(range(24)), "test": ds["test"].select(range(6))})
    for k, form in enumerate([small["train"], small, {"train": small["train"], "test": small["test"]}]):
        r = run_example(quick=True, dataset=form, max_steps=2, output_dir=str(tmp_path/f"r{k}"), disable_tqdm=True,
                        save_strategy="no", logging_steps=1)
        assert r.summary["steps"] == 2
        assert (r.summary["first_eval_loss"] is None) == (k == 0)
    with pytest.raises(DatasetFormatError, match="cannot train on"):
        run_example(quick=True, dataset="HuggingFaceTB/smoltalk", output_dir=str(tmp_path/"bad"))
