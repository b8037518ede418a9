"""The command line as a shell user meets it: output cut short by a pipe (`| head`), and the run a diagnosis names."""
import json, os, shutil, subprocess

EXE = shutil.which("sft-course")
LOG = [{"loss": round(2.0 - 0.1 * i, 2), "step": 10 * (i + 1)} for i in range(12)]


def _state(path):
    path.write_text(json.dumps({"log_history": LOG, "max_steps": 120}))


def _diagnose(cwd, target, **kw):
    return subprocess.run([EXE, "diagnose", target], cwd=cwd, text=True, timeout=120, **kw)


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    "`sft-course diagnose run | head`: when the reader has gone, the command stops quietly (141, as SIGPIPE), no error log."
    _state(tmp_path/"trainer_state.json")
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the command writes anything
    try: p = _diagnose(tmp_path, "trainer_state.json", stdout=w, stderr=subprocess.PIPE)
    finally: os.close(w)
    assert p.returncode == 141, (p.returncode, p.stderr)
    assert "error" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_diagnose_names_the_run(tmp_path):
    "A trainer_state.json in the current folder is named after that folder; `NAME.trainer_state.json` after NAME."
    (tmp_path/"myrun").mkdir()
    _state(tmp_path/"myrun"/"trainer_state.json")
    _state(tmp_path/"28_blowup.trainer_state.json")
    here = _diagnose(tmp_path/"myrun", "trainer_state.json", capture_output=True)
    named = _diagnose(tmp_path, "28_blowup.trainer_state.json", capture_output=True)
    assert here.returncode == named.returncode == 0, here.stderr + named.stderr
    assert "(run *myrun*)" in here.stdout, here.stdout[:300]
    assert "(run *28_blowup*)" in named.stdout, named.stdout[:300]


def test_help_imports_neither_torch_nor_transformers():
    "`sft-course --help` (and a mistyped command) answers without importing torch or transformers, which take seconds."
    import sys
    probe = ("import sys, contextlib, io\nfrom sft_course.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
             "    try: main(['--help'])\n    except SystemExit: pass\n"
             "assert 'sft-course' in out.getvalue() or 'usage' in out.getvalue(), out.getvalue()\n"
             "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", probe], text=True, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]", p.stdout
    h = subprocess.run([EXE, "--help"], text=True, capture_output=True, timeout=120)
    assert h.returncode == 0 and "plan" in h.stdout, h.stdout + h.stderr


def test_diagnose_reads_a_run_without_torch(tmp_path):
    "`sft-course diagnose RUN_DIR` reads JSON files: a checkpoint's history and samples.jsonl, without importing torch or TRL."
    import sys
    (tmp_path/"checkpoint-120").mkdir()
    (tmp_path/"checkpoint-120"/"trainer_state.json").write_text(json.dumps({"log_history": LOG, "max_steps": 120}))
    (tmp_path/"samples.jsonl").write_text(json.dumps({"step": 120, "prompt": "p", "output": "Paris.", "ended": True,
                                                       "new_tokens": 3}) + "\n")
    probe = ("import sys, contextlib, io\nfrom sft_course.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()) as out: code = main(['diagnose', sys.argv[1]])\n"
             "assert code == 0 and '| 120 | 1 | 100% |' in out.getvalue(), out.getvalue()\n"
             "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], text=True, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "[]", p.stdout


def test_checkpoint_checks_do_not_import_torch(tmp_path):
    "sft_course.runfiles checks a checkpoint's files (safetensors headers, zip directories) without importing torch."
    import sys, torch
    from safetensors.torch import save_file
    c = tmp_path/"checkpoint-5"
    c.mkdir()
    save_file({"w": torch.zeros(2, dtype=torch.bfloat16)}, c/"model.safetensors")
    for n in ("optimizer.pt", "scheduler.pt", "rng_state.pth"): torch.save({"step": 5}, c/n)
    (c/"trainer_state.json").write_text(json.dumps({"global_step": 5, "log_history": []}))
    probe = ("import sys\nfrom pathlib import Path\nfrom sft_course.runfiles import checkpoint_problems, last_checkpoint\n"
             "run = Path(sys.argv[1]); assert last_checkpoint(run) == run/'checkpoint-5'\n"
             "w = run/'checkpoint-5'/'model.safetensors'; w.write_bytes(w.read_bytes()[:w.stat().st_size // 2])\n"
             "assert checkpoint_problems(run/'checkpoint-5') == ['model.safetensors is damaged'], checkpoint_problems(run/'checkpoint-5')\n"
             "print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], text=True, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "False", p.stdout
