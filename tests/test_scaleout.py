"The multi-process path: the shipped accelerate configs load and validate, and DDP over gloo on a CPU trains like one process."
import json, os, shutil, subprocess, sys
from importlib.resources import files
from pathlib import Path
from unittest import mock

import pytest

CONFIGS = files("sft_course").joinpath("accelerate")
EXPECTED = {  # file: (distributed type, processes)
    "1gpu.yaml": ("NO", 1), "ddp-2gpu.yaml": ("MULTI_GPU", 2), "ddp-8gpu.yaml": ("MULTI_GPU", 8),
    "fsdp-full.yaml": ("FSDP", 2), "cpu-2proc.yaml": ("MULTI_GPU", 2),
}


def _validated(path):
    "What `accelerate launch --config_file path train.py` would run with, after accelerate's own checks."
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    return _validate_launch_command(args)[0]


def test_every_config_ships_with_the_package():
    assert sorted(p.name for p in CONFIGS.iterdir() if p.name.endswith(".yaml")) == sorted(EXPECTED)
    pyproject = (Path(__file__).parents[1]/"pyproject.toml").read_text()
    assert '"accelerate/*.yaml"' in pyproject  # package-data: a pip-installed learner has them too


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_and_validates(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    path = CONFIGS.joinpath(name)
    cfg = load_config_from_file(str(path))  # unknown keys and bad enum values raise here
    assert isinstance(cfg, ClusterConfig)
    kind, n = EXPECTED[name]
    assert (cfg.distributed_type.value, cfg.num_processes) == (kind, n)
    assert cfg.mixed_precision == "no"  # precision is the course profile's (SFTConfig bf16/fp16), never the launcher's
    args = _validated(path)
    assert args.num_processes == n and args.multi_gpu == (kind == "MULTI_GPU") and args.use_fsdp == (kind == "FSDP")
    assert args.use_cpu == (name == "cpu-2proc.yaml")


def test_fsdp_config_builds_the_plugin():
    "The environment `accelerate launch` would set is accepted by accelerate's FSDP plugin: FSDP2, layer-wise wrapping."
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env
    env = prepare_multi_gpu_env(_validated(CONFIGS.joinpath("fsdp-full.yaml")))
    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.transformer_cls_names_to_wrap == ["Qwen2DecoderLayer"]
    assert plugin.reshard_after_forward is True and not plugin.activation_checkpointing
    from transformers import Qwen2ForCausalLM
    assert hasattr(sys.modules[Qwen2ForCausalLM.__module__], "Qwen2DecoderLayer")  # the class FSDP wraps exists


def test_a_broken_config_is_refused(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file
    bad = tmp_path/"bad.yaml"
    bad.write_text(CONFIGS.joinpath("ddp-2gpu.yaml").read_text().replace("distributed_type: MULTI_GPU", "distributed_type: DDP"))
    with pytest.raises(ValueError): load_config_from_file(str(bad))
    bad.write_text(CONFIGS.joinpath("ddp-2gpu.yaml").read_text() + "num_gpus: 2\n")
    with pytest.raises(ValueError, match="unknown keys"): load_config_from_file(str(bad))


# ---------------------------------------------------------------- DDP over gloo, two CPU processes

RUN = '''
import json, sys
from transformers import TrainerCallback
from sft_course.train import run_example
kw = json.loads(sys.argv[1]); stop = kw.pop("stop_at", None); report = kw.pop("report")
class Stop(TrainerCallback):  # an interruption after `stop` steps, with the schedule of the whole run
    def on_step_end(self, args, state, control, **k):
        if stop and state.global_step >= stop: control.should_training_stop = True
r = run_example(quick=True, callbacks=[Stop()], **kw)
if r.trainer.state.is_world_process_zero:
    losses = {x["step"]: x["loss"] for x in r.trainer.state.log_history if "loss" in x}
    json.dump(dict(losses=losses, world_size=r.trainer.args.world_size, summary=r.summary), open(report, "w"))
'''

# The same global batch of 8 rows, in the same order: `sequential` so that one process's batch of 8 and two processes'
# batches of 4 hold the same rows (group_by_length would group differently for a per-device batch of 4 and of 8).
COMMON = dict(logging_steps=1, save_steps=2, eval_strategy="no", train_sampling_strategy="sequential", max_steps=6)


def _env(cache):
    # ACCELERATE_USE_CPU: accelerate's torchrun launcher does not pass the config's use_cpu on (see cpu-2proc.yaml)
    return {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg", "SFT_COURSE_CACHE": str(cache)}


def _launch(script, kw, cwd, cache, processes):
    accelerate = [shutil.which("accelerate"), "launch", "--config_file", str(CONFIGS.joinpath("cpu-2proc.yaml"))]
    cmd = (accelerate if processes == 2 else [sys.executable]) + [str(script), json.dumps(kw)]
    r = subprocess.run(cmd, cwd=cwd, env=_env(cache), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(Path(kw["report"]).read_text())


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume(tmp_path, offline_dir):
    cache = offline_dir.parent
    script = tmp_path/"run.py"
    script.write_text(RUN)
    one = _launch(script, dict(COMMON, per_device_train_batch_size=8, output_dir=str(tmp_path/"one"),
                               report=str(tmp_path/"one.json")), tmp_path, cache, 1)
    first = _launch(script, dict(COMMON, per_device_train_batch_size=4, output_dir=str(tmp_path/"two"), stop_at=4,
                                 report=str(tmp_path/"two-a.json")), tmp_path, cache, 2)
    assert one["world_size"] == 1 and first["world_size"] == 2
    two = tmp_path/"two"
    # one set of checkpoints, written once (the per-process RNG states are the only per-rank files)
    assert sorted(p.name for p in two.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    ck = two/"checkpoint-4"
    assert json.loads((ck/"trainer_state.json").read_text())["global_step"] == 4
    assert (ck/"model.safetensors").exists() and (ck/"optimizer.pt").exists()
    assert sorted(p.name for p in ck.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert not list(two.rglob("*rank*")) and not (two/"two").exists()

    second = _launch(script, dict(COMMON, per_device_train_batch_size=4, output_dir=str(two),
                                  report=str(tmp_path/"two-b.json")), tmp_path, cache, 2)
    assert second["summary"]["resumed_from"] == "checkpoint-4" and second["summary"]["steps"] == 6
    assert sorted(p.name for p in two.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]

    ref = {int(k): v for k, v in one["losses"].items()}
    got = {**{int(k): v for k, v in first["losses"].items()}, **{int(k): v for k, v in second["losses"].items()}}
    assert sorted(ref) == sorted(got) == [1, 2, 3, 4, 5, 6], (ref, got)
    assert ref[6] < ref[1]  # it learns: the comparison is between moving losses, not two copies of the start
    diffs = {s: abs(ref[s] - got[s]) for s in ref}
    assert max(diffs.values()) < 1e-3, diffs


@pytest.mark.slow
def test_sft_course_train_quick_runs_unchanged_under_accelerate(tmp_path, offline_dir):
    "`sft-course train --quick` itself, two processes: it trains, and the run directory holds one run."
    cmd = [shutil.which("accelerate"), "launch", "--config_file", str(CONFIGS.joinpath("cpu-2proc.yaml")),
           shutil.which("sft-course"), "train", "--quick", "--max-steps", "10", "--output-dir", str(tmp_path/"run")]
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(offline_dir.parent), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    out = tmp_path/"run"
    s = json.loads((out/"summary.json").read_text())
    assert s["steps"] == s["max_steps"] == 10
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-10"]
    rng = sorted(p.name for p in (out/"checkpoint-10").glob("rng_state*"))
    assert rng == ["rng_state_0.pth", "rng_state_1.pth"], rng  # one run of two processes, not two runs of one
    assert (out/"final"/"model.safetensors").exists() and (out/"loss_curve.png").exists()
