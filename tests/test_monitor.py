"Monitoring: LossHistory, phases, diagnosis, plots, explorer and live plot, on simulated runs and on real short runs."
import json, math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sft_course.errors import CheckpointError, SFTCourseError
from sft_course.monitor import (KINDS, STATUSES, Diagnosis, LivePlotCallback, LossExplorer, LossHistory, Thresholds, diagnose,
                                ema, find_phases, in_notebook, loss_explorer, plot_loss, simulate_history)

# TRL's SFTConfig itself passes the deprecated name; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")


# ---------------------------------------------------------------------------------------------- real runs
def train_run(offline_dir, out, train, lr, steps, eval_n=32, callbacks=(), **kwargs):
    "Train the offline stand-in the way the chapter does; return the trainer (checkpoints land in `out`)."
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer
    from sft_course.data import sample_dataset
    settings = dict(output_dir=str(out), max_steps=steps, learning_rate=lr, per_device_train_batch_size=8,
                    per_device_eval_batch_size=16, logging_steps=5, eval_strategy="steps", eval_steps=10, save_strategy="steps",
                    save_steps=steps, max_length=256, bf16=False, use_cpu=True, report_to="none", disable_tqdm=True, seed=0)
    args = SFTConfig(**{**settings, **kwargs})
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(offline_dir), args=args, train_dataset=train,
                         eval_dataset=sample_dataset()["test"].select(range(eval_n)),
                         processing_class=AutoTokenizer.from_pretrained(offline_dir), callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def data():
    from sft_course.data import sample_dataset
    return sample_dataset()


@pytest.mark.slow
def test_real_healthy_run(offline_dir, tmp_path, data):
    "All 480 conversations at a sensible learning rate: healthy; checkpoints, save_state and the live plot file all work."
    live = LivePlotCallback(save_path=tmp_path/"live.png", min_interval=0)
    trainer = train_run(offline_dir, tmp_path/"run", data["train"], lr=3e-3, steps=60, save_steps=20, callbacks=[live])
    h = LossHistory.from_checkpoint(tmp_path/"run")
    assert Path(h.source).parent.name == "checkpoint-60" and h.name == "run"
    d = diagnose(h)
    assert d.status == "healthy", d.reason
    e = d.evidence
    assert e["eval_loss_first"] - e["eval_loss_last"] > 1.0 and e["gap_ratio"] < Thresholds().max_gap
    assert find_phases(h).drop_end is not None
    # the earlier checkpoint still reads, and holds fewer points
    assert len(LossHistory.from_checkpoint(tmp_path/"run"/"checkpoint-20").train["loss"][0]) == 4
    # save_state writes a newer copy at the top, with the summary row
    trainer.save_state()
    top = LossHistory.from_checkpoint(tmp_path/"run")
    assert Path(top.source) == tmp_path/"run"/"trainer_state.json" and "train_loss" in top.summary
    # outside a notebook the callback displays nothing but writes its PNG
    assert not live.enabled and live.draws >= 2
    assert (tmp_path/"live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_real_overfitting_run(offline_dir, tmp_path, data):
    "16 conversations seen 30 times each, evaluated on held-out ones: overfitting."
    train_run(offline_dir, tmp_path, data["train"].select(range(16)), lr=1e-2, steps=60)
    d = diagnose(LossHistory.from_checkpoint(tmp_path))
    assert d.status == "overfitting", d.reason
    e = d.evidence
    assert e["train_drop"] > 0.3 and e["gap_ratio"] > 0.5
    assert e["eval_loss_first"] - e["eval_loss_last"] < 0.5  # validation barely moved while training fell by 3 nats


@pytest.mark.slow
def test_real_flat_run(offline_dir, tmp_path, data):
    "A learning rate of 1e-9 changes nothing: no improvement."
    train_run(offline_dir, tmp_path, data["train"], lr=1e-9, steps=30)
    h = LossHistory.from_checkpoint(tmp_path)
    d = diagnose(h)
    assert d.status == "no_improvement", d.reason
    assert abs(d.evidence["train_drop"]) < 0.01 and find_phases(h).spans == []


@pytest.mark.slow
def test_real_diverging_run_with_huge_losses(offline_dir, tmp_path, data):
    "A learning rate of 1e2: the loss stays finite but reaches millions."
    train_run(offline_dir, tmp_path, data["train"], lr=1e2, steps=20)
    h = LossHistory.from_checkpoint(tmp_path)
    assert np.isfinite(h.train["loss"][1]).all() and h.train["loss"][1].max() > 1e3
    d = diagnose(h)
    assert d.status == "diverging" and d.evidence["max_train_loss"] > Thresholds().max_loss, d.reason


@pytest.mark.slow
@pytest.mark.parametrize("nan_filter", [True, False])
def test_real_diverging_run_with_nan(offline_dir, tmp_path, data, nan_filter):
    "A learning rate of 1e10 gives NaN. With TrainingArguments' default NaN filter the logged loss reads 0.0 instead."
    train_run(offline_dir, tmp_path, data["train"], lr=1e10, steps=10, logging_steps=2, eval_steps=4,
              logging_nan_inf_filter=nan_filter)
    h = LossHistory.from_checkpoint(tmp_path)  # NaN survives the JSON round trip
    assert np.isnan(h.train["grad_norm"][1]).all() and np.isnan(h.eval["eval_loss"][1]).all()
    loss = h.train["loss"][1]
    assert (loss[1:] == 0).all() if nan_filter else np.isnan(loss).all()
    d = diagnose(h)
    assert d.status == "diverging", d.reason
    assert d.evidence["first_nonfinite_step"] == 2
    assert "grad_norm" in d.evidence["nonfinite_metrics"]
    plot_loss(h)  # NaN everywhere must not break the plot


@pytest.mark.slow
def test_real_memorization_run(offline_dir, tmp_path, data):
    "Two conversations repeated 32 times: the loss goes to almost 0 and the model recites."
    from datasets import Dataset
    two = data["train"].select(range(2))
    trainer = train_run(offline_dir, tmp_path, Dataset.from_list([two[i % 2] for i in range(64)]), lr=1e-2, steps=50)
    h = LossHistory.from_trainer(trainer)
    d = diagnose(h)
    assert d.status == "memorization", d.reason
    assert d.evidence["train_token_accuracy_last"] > 0.9 and d.evidence["eval_loss_last"] > 5
    # with the memorization line moved below its loss, it is still not healthy: validation got worse
    assert diagnose(h, Thresholds(memorization_loss=0.01)).status == "overfitting"


# ---------------------------------------------------------------------------------------------- simulated runs
@pytest.mark.parametrize("kind", KINDS)
def test_every_simulated_kind_is_recognised(kind):
    for seed in range(10):
        for steps in (50, 200, 600, 2000):
            d = diagnose(simulate_history(kind, steps=steps, seed=seed))
            assert d.status == kind, (seed, steps, d.reason)
            assert d.advice and isinstance(d, Diagnosis)


@pytest.mark.parametrize("kind", KINDS)
def test_simulation_is_deterministic_and_complete(kind):
    a, b, c = simulate_history(kind, seed=3), simulate_history(kind, seed=3), simulate_history(kind, seed=4)
    np.testing.assert_array_equal(a.train["loss"][1], b.train["loss"][1])
    assert not np.array_equal(a.train["loss"][1], c.train["loss"][1], equal_nan=True)
    assert {"loss", "grad_norm", "learning_rate", "mean_token_accuracy", "entropy", "num_tokens"} <= set(a.train)
    assert {"eval_loss", "eval_mean_token_accuracy"} <= set(a.eval)
    assert a.max_steps == 300 and a.train["loss"][0][-1] == 300


def test_unknown_kind_is_a_course_error():
    with pytest.raises(SFTCourseError, match="no_improvement"): simulate_history("fine")


def test_insufficient_data_status():
    h = simulate_history("healthy")
    assert diagnose(h.between(0, 12)).status == "insufficient_data"
    assert diagnose(LossHistory()).status == "insufficient_data"
    assert "insufficient_data" in STATUSES


def test_thresholds_are_overridable():
    h = simulate_history("healthy", seed=1)
    assert diagnose(h).status == "healthy"
    assert diagnose(h, Thresholds(max_gap=-0.5)).status == "overfitting"
    assert diagnose(h, Thresholds(min_improvement=0.9)).status == "no_improvement"
    assert diagnose(h, Thresholds(min_points=10_000)).status == "insufficient_data"


def test_nan_in_history_is_divergence_and_renders():
    log = [{"loss": 2.0 - 0.1*i, "grad_norm": 1.0, "step": i} for i in range(1, 9)] + [{"loss": float("nan"), "step": 9}]
    h = LossHistory.from_log_history(json.loads(json.dumps(log)))
    d = diagnose(h)
    assert d.status == "diverging" and d.evidence["first_nonfinite_step"] == 9
    assert "NaN" in h._repr_markdown_() and "diverging" in d._repr_markdown_() and "diverging" in d.to_html()


def test_exact_zero_after_losses_is_suspicious():
    "What the default NaN filter logs when there is no grad_norm or eval to give the NaN away."
    log = [{"loss": 3.0 - 0.2*i, "step": i} for i in range(1, 6)] + [{"loss": 0.0, "step": i} for i in range(6, 12)]
    d = diagnose(LossHistory.from_log_history(log))
    assert d.status == "diverging" and d.evidence["zero_loss_step"] == 6


# ---------------------------------------------------------------------------------------------- LossHistory
def test_log_history_parsing():
    log = [{"loss": 2.0, "grad_norm": 1.0, "epoch": 0.5, "step": 5}, {"eval_loss": 2.1, "eval_runtime": 0.3, "epoch": 0.5, "step": 5},
           {"loss": 1.5, "grad_norm": None, "epoch": 1.0, "step": 10}, {"loss": 1.4, "step": 10},
           {"train_loss": 1.7, "train_runtime": 9.0, "total_flos": 1.0, "epoch": 1.0, "step": 10}, {"note": "no step"}]
    h = LossHistory.from_log_history(log, name="x")
    np.testing.assert_array_equal(h.train["loss"][0], [5, 10])
    np.testing.assert_array_equal(h.train["loss"][1], [2.0, 1.4])  # the later row for a step wins
    assert np.isnan(h.train["grad_norm"][1][1])
    assert h.summary["train_loss"] == 1.7 and "train_loss" not in h.train
    assert h.metrics == ["loss", "grad_norm"] and "eval_loss" in h and "bleu" not in h
    np.testing.assert_array_equal(h.steps, [5, 10])
    np.testing.assert_array_equal(h.epoch[1], [0.5, 1.0])
    with pytest.raises(KeyError, match="eval_loss"): h.series("bleu")


def _write_state(d: Path, log, max_steps=100):
    d.mkdir(parents=True, exist_ok=True)
    (d/"trainer_state.json").write_text(json.dumps({"log_history": log, "max_steps": max_steps, "global_step": log[-1]["step"]}))


def test_from_checkpoint_picks_latest_and_explains_errors(tmp_path):
    _write_state(tmp_path/"out"/"checkpoint-20", [{"loss": 1.0, "step": 20}])
    _write_state(tmp_path/"out"/"checkpoint-100", [{"loss": 1.0, "step": 20}, {"loss": 0.5, "step": 100}])
    _write_state(tmp_path/"out"/"checkpoint-40", [{"loss": 1.0, "step": 20}, {"loss": 0.8, "step": 40}])
    h = LossHistory.from_checkpoint(tmp_path/"out")
    assert Path(h.source).parent.name == "checkpoint-100" and h.max_steps == 100 and h.name == "out"
    assert LossHistory.from_checkpoint(tmp_path/"out"/"checkpoint-40").name == "out/checkpoint-40"
    assert LossHistory.from_checkpoint(tmp_path/"out"/"checkpoint-20"/"trainer_state.json").train["loss"][0].tolist() == [20]
    with pytest.raises(CheckpointError) as e: LossHistory.from_checkpoint(tmp_path/"missing")
    assert e.value.where and e.value.fix
    (tmp_path/"empty").mkdir()
    with pytest.raises(CheckpointError, match="save_strategy"): LossHistory.from_checkpoint(tmp_path/"empty")
    (tmp_path/"bad").mkdir(); (tmp_path/"bad"/"trainer_state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable"): LossHistory.from_checkpoint(tmp_path/"bad")


def test_smoothing_is_debiased_ema():
    x = np.array([4.0, 2.0, np.inf, 1.0])
    w = 0.7
    expected1 = (w*(1 - w)*4 + (1 - w)*2)/(1 - w**2)
    s = ema(x, w)
    assert s[0] == 4.0 and math.isclose(s[1], expected1) and np.isinf(s[2])
    assert math.isclose(s[3], (w*w*(1 - w)*4 + w*(1 - w)*2 + (1 - w)*1)/(1 - w**3))
    h = simulate_history("healthy")
    sm = h.smooth(0.9)
    assert sm.name == h.name and np.std(np.diff(sm.train["loss"][1])) < np.std(np.diff(h.train["loss"][1]))/3
    with pytest.raises(SFTCourseError): h.smooth(1.5)


def test_phases_order_and_missing_phases():
    ph = find_phases(simulate_history("healthy", steps=1000))
    assert ph.start < ph.drop_end < ph.converged_from < ph.end
    assert [n for n, *_ in ph.spans] == ["sharp initial drop", "gradual stabilization", "convergence"]
    still_falling = [{"loss": 1 + 3*math.exp(-s/20) + 3*(1 - s/400), "step": s} for s in range(5, 305, 5)]
    early = find_phases(LossHistory.from_log_history(still_falling))
    assert early.converged_from is None and early.current == "gradual stabilization"
    assert "Not reached yet" in early._repr_markdown_()
    assert find_phases(simulate_history("no_improvement")).spans == []


def test_markdown_displays():
    h = simulate_history("overfitting")
    md = h._repr_markdown_()
    assert "simulated overfitting" in md and "| training loss |" in md and "| validation loss |" in md
    d = diagnose(h)
    md = d._repr_markdown_()
    assert "**overfitting**" in md and "gap ratio" in md and "What to do" in md and "%" in md
    assert "<code>load_best_model_at_end=True</code>" in d.to_html()


# ---------------------------------------------------------------------------------------------- plots
def test_plot_loss_is_labelled():
    from matplotlib.figure import Figure
    fig = plot_loss(simulate_history("diverging"), smoothing=0.6)
    assert isinstance(fig, Figure) and fig._repr_png_()[:4] == b"\x89PNG"
    ax = fig.axes[0]
    assert ax.get_title() == "simulated diverging: training and validation loss"
    assert ax.get_xlabel() == "optimizer step" and "loss" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "training loss (smoothed 0.60)" in labels and "validation loss (smoothed 0.60)" in labels
    assert any(l.startswith("first NaN/inf") for l in labels) and "phase 1: sharp initial drop" in labels
    assert any(t.get_text().startswith("phase") or t.get_text() == "1" for t in ax.texts)


def test_plot_loss_options():
    from matplotlib.figure import Figure
    h = simulate_history("healthy")
    fig = Figure(); ax = fig.add_subplot()
    assert plot_loss(h, ax=ax, log_scale=True, step_range=(50, 150), show_phases=False) is fig
    assert ax.get_yscale() == "log" and ax.get_xlim() == (50, 150) and not ax.texts
    ax2 = plot_loss(h, metrics=("grad_norm",)).axes[0]
    assert "gradient norm" in ax2.get_title() and "gradient norm" in ax2.get_ylabel()
    assert "nothing logged" in plot_loss(h, metrics=("bleu",)).axes[0].get_title()


# ---------------------------------------------------------------------------------------------- explorer and live plot
def test_explorer_controls_update_plot_and_diagnosis(tmp_path):
    _write_state(tmp_path/"mine"/"checkpoint-10", [{"loss": 3.0 - 0.05*i, "step": i} for i in range(1, 11)])
    ex = loss_explorer([tmp_path/"mine", simulate_history("memorization", seed=9)])
    assert isinstance(ex, LossExplorer)
    assert set(ex.controls) == {"run", "metric", "smoothing", "step_range", "log_scale", "show_train", "show_eval"}
    assert ex.controls["smoothing"].description == "smoothing"
    assert "sft-loss-explorer" in ex._dom_classes and "sft-loss-plot" in ex.plot._dom_classes
    assert "sft-diagnosis" in ex.diagnosis_html._dom_classes
    runs = list(ex.controls["run"].options)
    assert runs[:2] == ["mine", "simulated memorization"] and all(f"simulated {k}" in runs for k in KINDS)
    assert ex.controls["run"].value == "mine" and ex.controls["step_range"].value == (1, 10)
    ex.controls["run"].value = "simulated healthy"
    assert ex.diagnosis.status == "healthy" and ex.controls["step_range"].value == (3, 300)
    png, text = ex.plot.value, ex.diagnosis_html.value
    ex.controls["smoothing"].value = 0.95
    assert ex.plot.value != png and ex.diagnosis_html.value != text
    ex.controls["run"].value = "simulated diverging"
    assert ex.diagnosis.status == "diverging" and "diverging" in ex.diagnosis_html.value
    ex.controls["step_range"].value = (3, 120)
    assert ex.diagnosis.status == "healthy"  # before it blew up
    for k, v in (("metric", "grad_norm"), ("metric", "loss"), ("log_scale", True), ("show_eval", False), ("show_train", False)):
        png = ex.plot.value; ex.controls[k].value = v; assert ex.plot.value != png, k


def test_explorer_inputs():
    h = simulate_history("healthy")
    ex = loss_explorer({"a": h, "b": h}, simulated=False)
    assert list(ex.histories) == ["a", "b"] and ex.history.name == "a"
    assert list(loss_explorer([h, h], simulated=False).histories) == ["simulated healthy", "simulated healthy+"]
    with pytest.raises(SFTCourseError, match="LossHistory"): loss_explorer([42])
    with pytest.raises(SFTCourseError): loss_explorer(simulated=False)


def _fake_training(cb, log):
    args, control = SimpleNamespace(output_dir="/tmp/run"), SimpleNamespace()
    state = SimpleNamespace(log_history=[], max_steps=300, is_world_process_zero=True)
    cb.on_train_begin(args, state, control)
    for entry in log:
        state.log_history.append(entry)
        cb.on_log(args, state, control, logs=entry)
    cb.on_train_end(args, state, control)


def _log(kind="healthy"):
    h = simulate_history(kind)
    return [{"loss": float(v), "step": int(s)} for s, v in zip(*h.train["loss"])]


def test_live_plot_does_nothing_outside_a_notebook():
    assert not in_notebook()
    cb = LivePlotCallback()
    assert not cb.enabled
    _fake_training(cb, _log())
    assert cb.draws == 0


def test_live_plot_updates_one_display_in_a_notebook(monkeypatch):
    import IPython.display
    shown, updates = [], []
    class Handle:
        def update(self, obj): updates.append(obj)
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=False: shown.append(obj) or Handle())
    cb = LivePlotCallback(enabled=True, min_interval=0)
    cb.live = True
    _fake_training(cb, _log("overfitting")[:20])
    assert len(shown) == 2 and cb.draws == 21  # a plot and a diagnosis, shown once, then updated in place
    assert len(updates) == 2*20
    assert type(updates[-2]).__name__ == "Image" and "(run *run*)" in updates[-1].data


def test_live_plot_skips_other_processes_and_empty_logs():
    cb = LivePlotCallback(enabled=True, min_interval=0)
    args, control = SimpleNamespace(output_dir="/tmp/run"), SimpleNamespace()
    cb.draw(args, SimpleNamespace(log_history=_log(), max_steps=300, is_world_process_zero=False))
    cb.draw(args, SimpleNamespace(log_history=[{"train_runtime": 1.0, "train_loss": 1.0, "step": 1}], max_steps=1,
                                  is_world_process_zero=True))
    assert cb.draws == 0
