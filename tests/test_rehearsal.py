"The rehearsal runner (tools/rehearsal.py, tools/rehearse.sh): notest cells as test items, skips, dry-runs, refusals."
import os, re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/"tools"))
import rehearsal  # noqa: E402


@pytest.fixture(scope="module")
def demo_run():
    "The plugin run over the two small notebooks in tests/rehearsal/, as tools/rehearse.sh runs it over nbs/."
    env = os.environ | {"PYTHONPATH": str(ROOT/"tools"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "rehearsal", "-p", "no:cacheprovider", "-q", "-rN",
                        "tests/rehearsal/"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    return p.returncode, p.stdout.strip().splitlines()


def test_counts_ran_and_skipped_cells(demo_run):
    code, lines = demo_run
    assert code == 1  # some cells fail on purpose
    assert re.fullmatch(r"6 failed, 2 passed, 2 skipped in [\d.]+s( \([\d:]+\))?", lines[-1]), lines[-1]
    assert lines[-2] == "rehearsal: 8 notest cells ran, 2 skipped"  # just before pytest's closing line
    # the two that pass: the first notest cell, and the one after a failing notest cell (cells after a failure still
    # run); the cell after the last notest cell is not needed, so it does not run
    failed = [l for l in lines if l.startswith("rehearsal: failed tests/rehearsal/runner_demo.ipynb")]
    assert [l.split(" [")[0].split()[-1] for l in failed] == ["6"]
    assert not any("does not run" in l for l in lines)


def test_a_skip_is_reported_with_its_reason(demo_run):
    _, lines = demo_run
    assert "rehearsal: skipped tests/rehearsal/runner_demo.ipynb cell 4 [cell04]: skip (needs a dataset that exists " \
           "only on the Hub)" in lines
    assert not any("a skipped cell must not run" in l for l in lines)


def test_a_dry_run_records_the_push_and_counts_as_skipped(demo_run):
    _, lines = demo_run
    dry = [l for l in lines if l.startswith("rehearsal: skipped tests/rehearsal/runner_demo.ipynb cell 5 [cell05]")]
    assert len(dry) == 1
    assert "dry-run (pushing needs write access to the Hub); checked: PreTrainedConfig.push_to_hub('someone/demo-config'): " \
           "repo id, save_pretrained wrote 1 files" in dry[0]
    assert "HfApi.upload_folder('someone/demo'): repo id, folder with 1 files" in dry[0]
    assert "HfApi.create_repo('someone/demo-2')" in dry[0]  # the module-level function too


def test_refusals_fail_their_cells(demo_run):
    _, lines = demo_run
    failed = dict(m.groups() for l in lines if (m := re.fullmatch(r"rehearsal: failed (.+?\]): (.*)", l)))
    assert "invalid repo_id 'not a valid repo id!'" in failed["tests/rehearsal/refusals.ipynb cell 1 [cell01]"]
    assert failed["tests/rehearsal/refusals.ipynb cell 2 [cell02]"] == "marked dry-run, but it made no Hub-writing call"
    assert "NetworkBlocked" in failed["tests/rehearsal/refusals.ipynb cell 3 [cell03]"]
    assert "Unreadable rehearsal marker" in failed["tests/rehearsal/refusals.ipynb cell 4 [cell04]"]
    assert failed["tests/rehearsal/refusals.ipynb cell 6 [cell06]"] == "setup cell 5 [cell05] failed: RuntimeError: setup broke"
    assert failed["tests/rehearsal/runner_demo.ipynb cell 6 [cell06]"] == "ValueError: boom: this notest cell fails"
    text = "\n".join(lines)  # a failing cell's item shows the cell's source and traceback
    assert "raise ValueError('boom: this notest cell fails')\n--- traceback ---" in text


def test_cell_markers():
    assert rehearsal.cell_marker("#| notest\n# rehearsal: skip (no public copy)\nx") == ("skip", "no public copy")
    assert rehearsal.cell_marker("  #  rehearsal: dry-run (push)") == ("dry-run", "push")
    assert rehearsal.cell_marker("#| notest\nprint(1)") is None
    with pytest.raises(ValueError, match="Unreadable"): rehearsal.cell_marker("# rehearsal: skip")


def test_hub_writes_stand_ins_check_record_and_restore():
    import huggingface_hub
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError
    originals = (HfApi.create_repo, huggingface_hub.create_repo)
    with rehearsal.HubWrites() as hub:
        assert str(huggingface_hub.create_repo("me/ok")) == "https://huggingface.co/me/ok"
        with pytest.raises(rehearsal.HubWriteRefused, match="does not exist"):
            HfApi().upload_folder(repo_id="me/ok", folder_path="/nonexistent/folder")
        with pytest.raises(rehearsal.HubWriteRefused, match="invalid repo_id"): HfApi().create_repo("me/not ok")
    assert [c["call"] for c in hub.calls] == ["HfApi.create_repo"]
    assert (HfApi.create_repo, huggingface_hub.create_repo) == originals
    with pytest.raises(HFValidationError): HfApi().create_repo("me/not ok")  # the real one again (fails before any request)


def test_trainer_push_to_hub_is_checked(offline_dir, tmp_path):
    "The dry-run stand-in for Trainer.push_to_hub (chapter 4's last cell): the repo name, and the saved output folder."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from sft_course.data import sample_dataset
    def trainer(out, **kw):
        args = SFTConfig(output_dir=str(out), max_steps=1, per_device_train_batch_size=2, report_to="none", use_cpu=True,
                         save_strategy="no", disable_tqdm=True, bf16=False, max_length=64, **kw)
        return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(offline_dir), args=args,
                          train_dataset=sample_dataset()["train"].select(range(4)),
                          processing_class=AutoTokenizer.from_pretrained(offline_dir))
    good = trainer(tmp_path/"deepseek-t4")
    good.train()
    with rehearsal.HubWrites() as hub:
        good.push_to_hub(commit_message="SFT")
        with pytest.raises(rehearsal.HubWriteRefused, match="invalid repo_id"):
            trainer(tmp_path/"bad", hub_model_id="me/bad name!").push_to_hub()
    assert [(c["call"], c["repo_id"]) for c in hub.calls] == [("SFTTrainer.push_to_hub", "deepseek-t4")]
    assert "output_dir with" in hub.calls[0]["checked"] and (tmp_path/"deepseek-t4"/"model.safetensors").exists()


def test_rehearse_sh_runs_the_plugin_over_notebooks():
    "tools/rehearse.sh passes notebook paths and pytest options through (a collect-only run: no cell executes)."
    script = (ROOT/"tools"/"rehearse.sh").read_text()
    assert "SFT_COURSE_REHEARSAL=1" in script and "python tools/rehearsal.py env" in script and "-p rehearsal" in script
    env = os.environ | {"PYTHONPATH": str(ROOT/"tools")}
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "rehearsal", "-p", "no:cacheprovider", "-q",
                        "--collect-only", "tests/rehearsal/runner_demo.ipynb"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    items = [l for l in p.stdout.splitlines() if "::cell" in l]
    assert items == [f"tests/rehearsal/runner_demo.ipynb::cell {i} [cell{i:02d}]" for i in (2, 4, 5, 6, 8)], p.stdout


def test_generation_cap_limits_new_tokens_only_inside_the_block():
    "Notest cells ask for up to 1,024 new tokens; in the rehearsal they get REHEARSAL_SWAP's 64, and only there."
    import torch
    from sft_course.config import REHEARSAL_SWAP
    from sft_course.offline import offline_model_and_tokenizer
    model, tok = offline_model_and_tokenizer()
    ids = tok("Hello", return_tensors="pt")["input_ids"]
    new = lambda: model.generate(ids, max_new_tokens=100, min_new_tokens=100, do_sample=False, pad_token_id=tok.eos_token_id).shape[1] - ids.shape[1]
    with torch.no_grad():
        with rehearsal.generation_cap(): capped = new()
        after = new()
    assert (capped, after) == (REHEARSAL_SWAP["generation"]["max_new_tokens"], 100)


def test_a_model_card_push_is_recorded_offline():
    "ModelCard.push_to_hub validates the card online before uploading; in a dry-run it is checked and recorded instead."
    from huggingface_hub import ModelCard
    card = ModelCard("---\nlicense: mit\n---\n# A fine-tuned model\n")
    with rehearsal.HubWrites() as hub: card.push_to_hub("someone/card-demo")
    assert hub.summary().startswith("ModelCard.push_to_hub('someone/card-demo'): repo id, a card of")
    with rehearsal.HubWrites() as hub, pytest.raises(rehearsal.HubWriteRefused, match="repo_id"): card.push_to_hub("not a repo id")
