"""Monitoring: LossHistory, the diagnosis (on fourteen real public runs, on every simulated kind, and on real short runs of
the stand-in), sample quality, plots, the explorer and the live plot, and bad input of every kind (with hypothesis)."""
import json, math, os, re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from sft_course.errors import CheckpointError, ConfigError, DataValidationError, SFTCourseError
from sft_course.monitor import (KINDS, KIND_STATUS, RULES, STATUSES, Diagnosis, LivePlotCallback, LossExplorer, LossHistory,
                                Thresholds, diagnose, find_phases, is_looping, loss_explorer, plot_loss, sample_quality,
                                simulate_history, trend)

# TRL's SFTConfig itself passes the deprecated name; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")


# ---------------------------------------------------------------------------------------------- fourteen real runs
def real_runs_dir() -> Path:
    "The shared folder of real trainer_state.json files: $SFT_COURSE_REAL_RUNS, or shared/real-runs beside a parent folder."
    if os.environ.get("SFT_COURSE_REAL_RUNS"): return Path(os.environ["SFT_COURSE_REAL_RUNS"])
    for p in Path(__file__).resolve().parents:
        if (p/"shared"/"real-runs"/"LABELS.md").is_file(): return p/"shared"/"real-runs"
    return Path(__file__).resolve().parents[2]/"shared"/"real-runs"  # ../shared from the project root: named in the failure


def real_labels() -> dict:
    "{file name: set of acceptable statuses}, read from the label table in LABELS.md (never copied into the repository)."
    text = (real_runs_dir()/"LABELS.md").read_text(encoding="utf-8")
    out = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*\d+\s*\|\s*`([^`]+\.trainer_state\.json)`\s*\|.*\|\s*\*\*(?:ambiguous:\s*)?([a-z_ /]+)\*\*\s*\|[^|]*\|\s*$", line)
        if m: out[m.group(1)] = {s.strip() for s in m.group(2).split("/")}
    return out


REAL = sorted(real_labels().items()) if (real_runs_dir()/"LABELS.md").is_file() else []


@pytest.mark.real_runs
def test_real_runs_are_there():
    "The shared runs are read at test time; fourteen labelled files, each present."
    assert (real_runs_dir()/"LABELS.md").is_file(), f"no real runs at {real_runs_dir()} (set SFT_COURSE_REAL_RUNS)"
    assert len(REAL) == 14, [f for f, _ in REAL]
    assert all((real_runs_dir()/f).is_file() for f, _ in REAL)
    assert sum(len(s) == 2 for _, s in REAL) == 1  # one ambiguous run, two candidates


@pytest.mark.real_runs
@pytest.mark.parametrize("name,labels", REAL, ids=[f.split(".")[0] for f, _ in REAL])
def test_real_run_agrees_with_its_label(name, labels):
    "diagnose agrees with a practitioner's label on each public run, with no per-file special case."
    d = diagnose(LossHistory.from_checkpoint(real_runs_dir()/name))
    assert d.status in labels, (d.status, d.rule, d.reason)
    assert d.status in STATUSES and d.rule in {r.name for r in RULES}


@pytest.mark.real_runs
def test_real_runs_scope_and_fp16_notes():
    "The preference run carries the scope caveat beside its verdict; the fp16 run a note on its skipped steps."
    pref = diagnose(LossHistory.from_checkpoint(real_runs_dir()/"11_tinyllama-dpo-3ep.trainer_state.json"))
    assert pref.status == "overfitting" and any("preference loss" in n for n in pref.notes)
    fp16 = diagnose(LossHistory.from_checkpoint(real_runs_dir()/"05_kg-llm-fp16-nan-gradnorm.trainer_state.json"))
    assert fp16.evidence["nonfinite_grad_norms"] == 3 and any("loss scaler" in n for n in fp16.notes)


# ---------------------------------------------------------------------------------------------- simulated runs
@pytest.mark.parametrize("kind", KINDS)
def test_every_textbook_kind_is_recognised(kind):
    for seed in range(10):
        for steps in (50, 200, 600, 2000):
            d = diagnose(simulate_history(kind, steps=steps, seed=seed))
            assert d.status == kind, (seed, steps, d.reason)
            assert d.advice and isinstance(d, Diagnosis)


@pytest.mark.parametrize("kind", [k for k in KIND_STATUS if k not in KINDS])
def test_every_class_of_real_run_is_recognised(kind):
    "The simulated classes that fool a naive reading get the status they were built to show."
    for seed in range(10):
        for steps in (120, 300, 1000):
            d = diagnose(simulate_history(kind, steps=steps, seed=seed))
            assert d.status == KIND_STATUS[kind], (seed, steps, d.rule, d.reason)


def test_fast_drop_within_one_logging_interval():
    "A LoRA curve 1.6 -> 1.15 in six steps, then slowly to 1.08, is healthy however often it is logged."
    for every in (1, 2, 5, 10):
        steps = np.arange(1, 301, every)
        v = 1.08 + 0.07*(1 - steps/300) + 0.52*np.exp(-(steps - 1)/2.2)
        h = LossHistory.from_log_history([dict(loss=float(a), step=int(b)) for a, b in zip(v, steps)])
        assert diagnose(h).status == "healthy", every


def test_short_histories_of_twelve_logs():
    for kind in KINDS:
        for seed in range(10):
            d = diagnose(simulate_history(kind, steps=120, logging_steps=10, eval_steps=20, seed=seed))
            assert d.status == kind, (kind, seed, d.reason)


def test_simulation_is_deterministic_and_complete():
    for kind in KIND_STATUS:
        a, b, c = simulate_history(kind, seed=3), simulate_history(kind, seed=3), simulate_history(kind, seed=4)
        np.testing.assert_array_equal(a.train["loss"][1], b.train["loss"][1])
        assert not np.array_equal(a.train["loss"][1], c.train["loss"][1], equal_nan=True)
        assert a.max_steps == 300 and a.train["loss"][0][-1] == 300
    a = simulate_history("healthy")
    assert {"loss", "grad_norm", "learning_rate", "mean_token_accuracy", "entropy", "num_tokens"} <= set(a.train)
    assert {"eval_loss", "eval_mean_token_accuracy"} <= set(a.eval)


def test_simulation_arguments_are_checked():
    with pytest.raises(ConfigError, match="no_improvement"): simulate_history("fine")
    for kw in (dict(steps=0), dict(steps="300"), dict(seed=-1), dict(noise=1.5), dict(logging_steps=0), dict(eval_steps=-1)):
        with pytest.raises(ConfigError): simulate_history("healthy", **kw)


def test_insufficient_data_and_windows():
    h = simulate_history("healthy")
    assert diagnose(h.between(0, 12)).status == "insufficient_data"
    assert diagnose(LossHistory()).status == "insufficient_data"
    flat = simulate_history("no_improvement")
    late = flat.between(150, 300)
    assert diagnose(flat).status == "no_improvement" and late.cut == 150
    assert diagnose(late).status == "healthy" and any("window starts" in n for n in diagnose(late).notes)
    bare = LossHistory(train={"loss": late.train["loss"]}, name="late", cut=150)  # no validation: the late_plateau rule
    assert diagnose(bare).rule == "late_plateau"


def test_thresholds_are_overridable_and_checked():
    h = simulate_history("healthy", seed=1)
    assert diagnose(h).status == "healthy"
    assert diagnose(h, Thresholds(max_gap=0.01)).status == "overfitting"
    assert diagnose(h, Thresholds(min_improvement=0.9)).status == "no_improvement"
    assert diagnose(h, Thresholds(min_points=10_000)).status == "insufficient_data"
    for bad in (dict(max_gap=-0.5), dict(min_points=1), dict(window=0.9), dict(noise_z=float("nan")), dict(eval_rise="5%")):
        with pytest.raises(ConfigError): Thresholds(**bad)


def test_metric_follows_and_is_checked():
    h = simulate_history("overfitting")
    d = diagnose(h, metric="mean_token_accuracy")
    assert d.status == "overfitting" and d.metric == "mean_token_accuracy" and "error rate" in d.reason
    with pytest.raises(ConfigError, match="not a learning curve"): diagnose(h, metric="grad_norm")


def test_nan_in_history_is_divergence_and_renders():
    log = [{"loss": 2.0 - 0.1*i, "grad_norm": 1.0, "step": i} for i in range(1, 9)] + [{"loss": float("nan"), "step": 9}]
    h = LossHistory.from_log_history(json.loads(json.dumps(log)))
    d = diagnose(h)
    assert d.status == "diverging" and d.rule == "nonfinite_loss" and d.evidence["first_nonfinite_step"] == 9
    assert "NaN" in h._repr_markdown_() and "diverging" in d._repr_markdown_()


def test_nan_grad_norm_that_stays_is_divergence_one_that_recovers_is_not():
    base = [{"loss": 3.0*math.exp(-i/10) + 1, "step": i} for i in range(1, 31)]
    stays = [{**r, "grad_norm": float("nan") if r["step"] >= 20 else 1.0} for r in base]
    skips = [{**r, "grad_norm": float("nan") if r["step"] in (1, 2) else 1.0} for r in base]
    assert diagnose(LossHistory.from_log_history(stays)).rule == "nonfinite_grad_norm"
    d = diagnose(LossHistory.from_log_history(skips))
    assert d.status == "healthy" and d.evidence["grad_norm_recovered"] is True


def test_exact_zero_after_losses_is_suspicious():
    "What the default NaN filter logs when there is no grad_norm or eval to give the NaN away."
    log = [{"loss": 3.0 - 0.2*i, "step": i} for i in range(1, 6)] + [{"loss": 0.0, "step": i} for i in range(6, 12)]
    d = diagnose(LossHistory.from_log_history(log))
    assert d.status == "diverging" and d.evidence["zero_loss_step"] == 6


def test_losses_that_are_not_cross_entropy():
    signed = LossHistory.from_log_history([{"loss": 0.05 - 0.01*i, "step": i} for i in range(1, 40)])
    assert diagnose(signed).status == "out_of_scope" and "below 0" in diagnose(signed).notes[0]
    ln2 = LossHistory.from_log_history([{"loss": math.log(2)*(1 - 0.01*i), "step": i} for i in range(0, 40)])
    assert diagnose(ln2).status == "out_of_scope"
    assert diagnose(simulate_history("preference", eval_steps=20)).status == "overfitting"


# ---------------------------------------------------------------------------------------------- sample quality
def test_loops_are_found_at_the_end():
    assert is_looping("</think>\n"*24) and is_looping("1. " + "the "*12) and is_looping("\n"*48)
    for fine in ("Paris is the capital of France.", "Wait...", "ha ha ha", "1.", "", "Yes!!!"):
        assert not is_looping(fine), fine


def test_sample_quality_per_step_and_from_a_file(tmp_path):
    recs = [dict(step=10, prompt="a", output="Paris.", ended=True, new_tokens=3),
            dict(step=10, prompt="b", output="the "*20, ended=False, new_tokens=48),
            dict(step=20, prompt="a", output="Paris.", ended=True, new_tokens=3),
            dict(step=20, prompt="b", output="Hanoi.", ended=True, new_tokens=4)]
    q = sample_quality(recs)
    assert [s.step for s in q.steps] == [10, 20] and q.first.looping == 0.5 and q.last.ended == 1.0
    assert q.summary()["last"]["mean_new_tokens"] == 3.5 and "| 10 | 2 | 50% | 50% | 25.5 |" in q._repr_markdown_()
    f = tmp_path/"samples.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 30, "outp')  # a run killed mid-line
    assert [s.step for s in sample_quality(f).steps] == [10, 20]
    f.write_text('{"step": 1\n' + json.dumps(recs[0]) + "\n")
    with pytest.raises(DataValidationError, match="Line 1"): sample_quality(f)
    with pytest.raises(CheckpointError): sample_quality(tmp_path/"missing.jsonl")


def test_diagnosis_warns_when_outputs_degenerate_under_a_healthy_loss():
    h = simulate_history("healthy")
    bad = [dict(step=300, prompt=p, output="</think>\n"*24, ended=False, new_tokens=48) for p in "abc"]
    good = [dict(step=300, prompt=p, output="An answer.", ended=True, new_tokens=4) for p in "abc"]
    d = diagnose(h, samples=bad)
    assert d.status == "healthy" and d.warnings and d.warnings[0].startswith("The loss looks healthy, but")
    assert d.evidence["outputs_looping"] == 1.0 and "**Warning:**" in d._repr_markdown_()
    assert not diagnose(h, samples=good).warnings
    assert diagnose(simulate_history("diverging"), samples=bad).warnings[0].startswith("The outputs")


@pytest.mark.parametrize("bad,match", [(None, "not a NoneType"), ("x", "no samples file"), ([1], "not a record"),
                                       ([{"step": 1, "output": "a", "ended": "yes", "new_tokens": 1}], "ended='yes'"),
                                       ([{"step": True, "output": "a", "ended": True, "new_tokens": 1}], "step=True")])
def test_bad_samples_are_named(bad, match):
    with pytest.raises(SFTCourseError, match=match): sample_quality(bad)


# ---------------------------------------------------------------------------------------------- LossHistory and bad input
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
    np.testing.assert_array_equal(h.epoch[1], [0.5, 1.0])
    with pytest.raises(CheckpointError, match="eval_loss"): h.series("bleu")


def _write_state(d: Path, log, max_steps=100):
    d.mkdir(parents=True, exist_ok=True)
    (d/"trainer_state.json").write_text(json.dumps({"log_history": log, "max_steps": max_steps, "global_step": log[-1]["step"]}))


def test_from_checkpoint_picks_the_latest_complete_checkpoint(tmp_path):
    _write_state(tmp_path/"out"/"checkpoint-20", [{"loss": 1.0, "step": 20}])
    _write_state(tmp_path/"out"/"checkpoint-100", [{"loss": 1.0, "step": 20}, {"loss": 0.5, "step": 100}])
    _write_state(tmp_path/"out"/"checkpoint-40", [{"loss": 1.0, "step": 20}, {"loss": 0.8, "step": 40}])
    (tmp_path/"out"/"checkpoint-200").mkdir()  # cut short before its trainer_state.json was written: not complete
    h = LossHistory.from_checkpoint(tmp_path/"out")
    assert Path(h.source).parent.name == "checkpoint-100" and h.max_steps == 100 and h.name == "out"
    assert LossHistory.from_checkpoint(tmp_path/"out"/"checkpoint-40").name == "out/checkpoint-40"


@pytest.mark.parametrize("content,match", [("", "is empty"), ("[]", "holds a list"), ("null", "holds a NoneType"),
                                           ("{}", "no log_history"), ("{not json", "not a readable"), ('"text"', "holds a str"),
                                           ('{"log_history": "loss"}', "not a str"), ('{"log_history": ["a", "b"]}', "Row 0"),
                                           ('{"log_history": [{"loss": 1, "step": "ten"}]}', "step 'ten'"),
                                           ('{"log_history": [{"loss": 1, "step": 1.5}]}', "step 1.5"),
                                           ('{"log_history": null}', "not a NoneType")])
def test_broken_trainer_state_files_are_named(tmp_path, content, match):
    (tmp_path/"trainer_state.json").write_text(content)
    with pytest.raises(CheckpointError, match=re.escape(match)) as e: LossHistory.from_checkpoint(tmp_path)
    assert e.value.where and e.value.fix


def test_missing_paths_and_wrong_types_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no file or directory"): LossHistory.from_checkpoint(tmp_path/"missing")
    (tmp_path/"empty").mkdir()
    with pytest.raises(CheckpointError, match="save_strategy"): LossHistory.from_checkpoint(tmp_path/"empty")
    for bad in (None, 3, ["a"]):
        with pytest.raises(CheckpointError): LossHistory.from_checkpoint(bad)
        with pytest.raises(CheckpointError): LossHistory.from_log_history(bad if bad != ["a"] else [["a"]])
        with pytest.raises(CheckpointError): LossHistory.from_trainer(bad)


@pytest.mark.parametrize("call", [lambda: diagnose(None), lambda: diagnose([1, 2]), lambda: plot_loss(None), lambda: find_phases("run"),
                                  lambda: diagnose(simulate_history("healthy"), thresholds={"max_gap": 1}),
                                  lambda: plot_loss(simulate_history("healthy"), smoothing=2),
                                  lambda: plot_loss(simulate_history("healthy"), metrics=[1, 2]),
                                  lambda: plot_loss(simulate_history("healthy"), step_range=(5, 1)),
                                  lambda: plot_loss(simulate_history("healthy"), ax="axes"),
                                  lambda: simulate_history("healthy").between("a"), lambda: trend([1.0, 2.0], -0.1),
                                  lambda: loss_explorer([42]), lambda: loss_explorer(simulated=False),
                                  lambda: loss_explorer(thresholds="strict"), lambda: LivePlotCallback(smoothing=1.0)],
                         ids=lambda c: "")
def test_public_functions_name_wrong_arguments(call):
    with pytest.raises(SFTCourseError) as e: call()
    assert e.value.where and e.value.fix


# ---------------------------------------------------------------------------------------------- property-based
_value = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=5), st.lists(st.integers(), max_size=2))
_key = st.sampled_from(["loss", "eval_loss", "grad_norm", "epoch", "learning_rate", "mean_token_accuracy", "eval_mean_token_accuracy",
                        "rewards/margins", "train_loss", "reward", "x"])
_row = st.one_of(st.dictionaries(st.one_of(_key, st.just("step")), st.one_of(_value, st.integers(0, 500)), max_size=6),
                 _value)
_log = st.one_of(st.lists(_row, max_size=40), _value, st.dictionaries(st.text(max_size=3), _value, max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_log)
@example([{"loss": None, "step": 9.223372036854776e+18}])  # 2**63: once an OverflowError from numpy
def test_random_histories_raise_only_course_errors(log):
    "Anything at all as a log history: a history and a diagnosis, or an SFTCourseError; never another exception."
    try:
        h = LossHistory.from_log_history(log)
        for metric in ("loss", "mean_token_accuracy"):
            d = diagnose(h, metric=metric)
            assert d.status in STATUSES and d._repr_markdown_()
        find_phases(h)
    except SFTCourseError as e:
        assert e.where and e.fix


_loss = st.floats(0.001, 50, allow_nan=False)
_valid_log = st.lists(st.tuples(st.integers(1, 10_000), _loss, st.one_of(st.none(), _loss), st.one_of(st.none(), _loss)),
                      min_size=0, max_size=80)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_valid_log, st.booleans())
def test_valid_histories_never_raise(rows, cut):
    "Valid rows (whole steps, finite positive losses, optional grad norms and evaluations) always get a status."
    log = [dict(step=s, loss=l, **({} if g is None else dict(grad_norm=g))) for s, l, g, _ in rows]
    log += [dict(step=s, eval_loss=e) for s, _, _, e in rows if e is not None]
    h = LossHistory.from_log_history(log)
    if cut and len(h.steps): h = h.between(int(np.median(h.steps)), None)
    d = diagnose(h)
    assert d.status in STATUSES and d.status != "out_of_scope" or "ln 2" in " ".join(d.notes)
    find_phases(h)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_valid_log)
def test_valid_histories_plot(rows):
    h = LossHistory.from_log_history([dict(step=s, loss=l) for s, l, _, _ in rows])
    plot_loss(h, smoothing=0.6)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=60), st.text(max_size=60)))
def test_random_trainer_state_files_raise_only_checkpoint_errors(tmp_path, content):
    f = tmp_path/"trainer_state.json"
    f.write_bytes(content) if isinstance(content, bytes) else f.write_text(content, encoding="utf-8")
    try: LossHistory.from_checkpoint(f)
    except CheckpointError as e: assert e.where and e.fix


# ---------------------------------------------------------------------------------------------- trend, phases, plots
def test_trend_has_no_lag_on_a_short_history():
    "Smoothing 0.6 on 12 falling points: TensorBoard's EMA sits above every point, the trend does not."
    import pandas as pd
    x = np.arange(1, 13)
    raw = 5.0 + 2.4*np.exp(-x/4)
    ema = pd.Series(raw).ewm(alpha=0.4, adjust=True).mean().to_numpy()
    assert (ema[1:] > raw[1:]).all() and np.mean(ema - raw) > 0.1  # the first point is the point itself
    t = trend(raw, 0.6)
    assert abs(np.mean(t - raw)) < 0.2*np.mean(ema - raw) and (t < raw).any()
    v = np.array([4.0, np.nan, 2.0, np.inf, 1.0])
    s = trend(v, 0.7)
    assert np.isnan(s[1]) and np.isinf(s[3]) and np.isfinite(s[[0, 2, 4]]).all()
    h = simulate_history("noisy")
    assert np.std(np.diff(h.smooth(0.9).train["loss"][1])) < np.std(np.diff(h.train["loss"][1]))/3


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
    assert "**overfitting**" in md and "gap ratio" in md and "What to do" in md and "%" in md and "`validation_rises`" in md
    assert d.brief().startswith("**overfitting** (rule `validation_rises`)")


def test_plot_loss_is_labelled():
    from matplotlib.figure import Figure
    fig = plot_loss(simulate_history("diverging"), smoothing=0.6)
    assert isinstance(fig, Figure) and fig._repr_png_()[:4] == b"\x89PNG"
    ax = fig.axes[0]
    assert ax.get_title() == "simulated diverging: training and validation loss"
    assert ax.get_xlabel() == "optimizer step" and "loss" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "training loss (trend, 0.60)" in labels and "validation loss (trend, 0.60)" in labels
    assert any(l.startswith("first NaN/inf") for l in labels) and "phase 1: sharp initial drop" in labels


def test_plot_loss_options():
    from matplotlib.figure import Figure
    h = simulate_history("healthy")
    fig = Figure(); ax = fig.add_subplot()
    assert plot_loss(h, ax=ax, log_scale=True, step_range=(50, 150), show_phases=False) is fig
    assert ax.get_yscale() == "log" and ax.get_xlim() == (50, 150) and not ax.texts
    ax2 = plot_loss(h, metrics="grad_norm").axes[0]
    assert "gradient norm" in ax2.get_title() and "gradient norm" in ax2.get_ylabel()
    assert "nothing logged" in plot_loss(h, metrics=("bleu",)).axes[0].get_title()


# ---------------------------------------------------------------------------------------------- explorer and live plot
def _text(out): return out.outputs[0]["data"]["text/markdown"]


def test_explorer_controls_update_plot_and_diagnosis(tmp_path):
    _write_state(tmp_path/"mine"/"checkpoint-10", [{"loss": 3.0 - 0.05*i, "step": i} for i in range(1, 11)])
    ex = loss_explorer([tmp_path/"mine", simulate_history("memorization", seed=9)])
    assert isinstance(ex, LossExplorer) and "sft-loss-explorer" in ex._dom_classes and "sft-diagnosis" in ex.diagnosis_out._dom_classes
    assert {"run", "metric", "smoothing", "step_range", "guess_first", "reveal", "max_gap"} <= set(ex.controls)
    runs = list(ex.controls["run"].options)
    assert runs[:2] == ["mine", "simulated memorization"] and all(f"simulated {k}" in runs for k in KIND_STATUS)
    assert ex.controls["run"].value == "mine" and ex.controls["step_range"].value == (1, 10)
    ex.controls["run"].value = "simulated healthy"
    assert ex.diagnosis.status == "healthy" and ex.controls["step_range"].value == (3, 300)
    png, text = ex.plot.value, _text(ex.diagnosis_out)
    ex.controls["smoothing"].value = 0.95
    assert ex.plot.value != png and _text(ex.diagnosis_out) != text
    ex.controls["min_improvement"].value = 0.5
    assert ex.diagnosis.status == "no_improvement"  # the slider moved the 'flat' line above this run's drop
    ex.controls["min_improvement"].value = 0.1
    ex.controls["run"].value = "simulated diverging"
    assert ex.diagnosis.status == "diverging" and _text(ex.diagnosis_out).startswith("**diverging**")
    ex.controls["step_range"].value = (3, 120)
    assert ex.diagnosis.status == "healthy"  # before it blew up
    for k, v in (("metric", "grad_norm"), ("metric", "loss"), ("log_scale", True), ("show_eval", False), ("show_train", False)):
        png = ex.plot.value; ex.controls[k].value = v; assert ex.plot.value != png, k


def test_explorer_diagnosis_follows_metric_and_window():
    ex = loss_explorer(simulate_history("overfitting"), simulated=False)
    ex.controls["metric"].value = "mean_token_accuracy"
    assert ex.diagnosis.metric == "mean_token_accuracy"
    ex.controls["metric"].value = "learning_rate"
    assert ex.diagnosis is None and "not a learning curve" in _text(ex.diagnosis_out)
    ex = loss_explorer(simulate_history("no_improvement"), simulated=False)
    ex.controls["step_range"].value = (150, 300)
    assert ex.diagnosis.status == "healthy"  # a late window is judged on its own terms


def test_explorer_guess_then_reveal_and_picture():
    import base64
    ex = loss_explorer(simulated=True)
    ex.controls["run"].value = "simulated staircase"
    ex.controls["guess_first"].value = True
    assert "your turn" in _text(ex.diagnosis_out) and ex._fig._suptitle.get_text() == "diagnosis: ?"
    ex.controls["guess"].value = "healthy"
    ex.controls["reveal"].click()
    text = _text(ex.diagnosis_out)
    assert "You guessed **healthy**: the diagnosis differs" in text and "simulated as `staircase`" in text and "**memorization**" in text
    ex.controls["guess"].value = "memorization"  # a new guess hides the verdict again
    assert "your turn" in _text(ex.diagnosis_out)
    bundle = ex._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"])[:4] == b"\x89PNG" and "Interactive widget" in bundle["text/plain"]


def test_explorer_inputs():
    h = simulate_history("healthy")
    ex = loss_explorer({"a": h, "b": h}, simulated=False)
    assert list(ex.histories) == ["a", "b"] and ex.history.name == "a"
    assert list(loss_explorer([h, h], simulated=False).histories) == ["simulated healthy", "simulated healthy+"]


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
    args = SimpleNamespace(output_dir="/tmp/run")
    cb.draw(args, SimpleNamespace(log_history=_log(), max_steps=300, is_world_process_zero=False))
    cb.draw(args, SimpleNamespace(log_history=[{"train_runtime": 1.0, "train_loss": 1.0, "step": 1}], max_steps=1,
                                  is_world_process_zero=True))
    assert cb.draws == 0


# ---------------------------------------------------------------------------------------------- real short runs of the stand-in
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
    assert d.evidence["eval_first"] - d.evidence["eval_last"] > 1.0 and d.evidence["gap_ratio"] < Thresholds().max_gap
    assert find_phases(h).drop_end is not None
    assert len(LossHistory.from_checkpoint(tmp_path/"run"/"checkpoint-20").train["loss"][0]) == 4
    trainer.save_state()
    top = LossHistory.from_checkpoint(tmp_path/"run")
    assert Path(top.source) == tmp_path/"run"/"trainer_state.json" and "train_loss" in top.summary
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
    assert e["eval_first"] - e["eval_last"] < 0.5  # validation barely moved while training fell by 3 nats


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
    "A learning rate of 1e2: the loss stays finite but reaches far above where it started."
    train_run(offline_dir, tmp_path, data["train"], lr=1e2, steps=20)
    h = LossHistory.from_checkpoint(tmp_path)
    assert np.isfinite(h.train["loss"][1]).all() and h.train["loss"][1].max() > 1e3
    d = diagnose(h)
    assert d.status == "diverging", d.reason


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
    assert d.evidence["first_nonfinite_grad_norm_step"] == 2 and d.evidence["grad_norm_recovered"] is False
    plot_loss(h)  # NaN everywhere must not break the plot


@pytest.mark.slow
def test_real_memorization_run(offline_dir, tmp_path, data):
    "Two conversations repeated 32 times: the loss goes to almost 0, the model recites, and validation gets worse."
    from datasets import Dataset
    two = data["train"].select(range(2))
    trainer = train_run(offline_dir, tmp_path, Dataset.from_list([two[i % 2] for i in range(64)]), lr=1e-2, steps=80)
    h = LossHistory.from_trainer(trainer)
    d = diagnose(h)
    assert d.status == "memorization", d.reason
    assert d.evidence["eval_last"] > 5 and float(h.train["mean_token_accuracy"][1][-1]) > 0.9
    # with the near-zero line moved below its loss, it is still not healthy: validation got worse
    assert diagnose(h, Thresholds(memorization_loss=0.001)).status == "overfitting"
