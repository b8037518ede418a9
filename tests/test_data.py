"Chapter 2 (data): converters, every validation problem, malformed rows (and random ones: hypothesis), cleaning, loss masks against SFTTrainer, train/inference parity on DeepSeek's template, smoltalk offline."
import random

import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from hypothesis import HealthCheck, given, settings, strategies as st
from trl.chat_template_utils import get_training_chat_template

from sft_course.data import (EMPTY_REASONING, PROBLEMS, SCHEMAS, DataIssue, DataReport, add_empty_reasoning, check_row,
                             detect_schema, fold_system_prompt, load_smoltalk, sample_dataset, show_loss_mask, standardize,
                             template_parity, to_messages, validate)
from sft_course.errors import ConfigError, DatasetFormatError, DataValidationError, HubAccessError, SFTCourseError


@pytest.fixture(scope="module")
def tok(offline_dir): return AutoTokenizer.from_pretrained(offline_dir)


def turns(*pairs): return [{"role": r, "content": c} for r, c in pairs]

GOOD = to_messages("What is 2+2?", "4.")


# ---------------------------------------------------------------- converters

def test_to_messages_places_system_context_and_metadata():
    row = to_messages("Q?", "A.", system="Sys.", context="Doc.", metadata={"id": 3, "lang": "en"})
    assert row == {"messages": turns(("system", "Sys."), ("user", "Q?\n\nDoc."), ("assistant", "A.")), "id": 3, "lang": "en"}
    assert to_messages("Q?", "A.", context=" \n") == {"messages": turns(("user", "Q?"), ("assistant", "A."))}
    assert to_messages("Q?", None)["messages"][1] == {"role": "assistant", "content": None}  # kept for validate to flag
    assert to_messages("2+2?", 4)["messages"][1]["content"] == "4"
    with pytest.raises(DatasetFormatError): to_messages("Q?", "A.", metadata={"messages": []})
    with pytest.raises(DatasetFormatError, match="to_messages.prompt"): to_messages(["a", "b"], "A.")
    with pytest.raises(DatasetFormatError, match="metadata must be a dict"): to_messages("Q?", "A.", metadata=[1])


def test_standardize_pairs_with_configured_columns_keeps_metadata(capsys):
    ds = Dataset.from_dict({"id": [1, 2], "ticket": ["Kettle leaks.", "Refund?"], "reply": ["Replacing it.", "Yes."],
                            "doc": ["X200", None], "sys": ["Be kind.", "Be brief."]})
    out = standardize(ds, prompt_column="ticket", response_column="reply", context_column="doc", system_column="sys")
    assert "input-output pairs (ticket -> user, reply -> assistant)" in capsys.readouterr().out
    assert out.column_names == ["id", "messages"]
    assert out[0]["messages"] == turns(("system", "Be kind."), ("user", "Kettle leaks.\n\nX200"), ("assistant", "Replacing it."))
    assert out[1]["messages"] == turns(("system", "Be brief."), ("user", "Refund?"), ("assistant", "Yes."))
    numbers = standardize(Dataset.from_dict({"q": ["2+2?", "3+3?"], "a": [4, None]}), prompt_column="q", response_column="a")
    assert numbers["messages"][0][1]["content"] == "4" and numbers["messages"][1][1]["content"] is None  # text, or None


@pytest.mark.parametrize("cols", [("question", "answer"), ("query", "response"), ("prompt", "response"), ("input", "output")])
def test_standardize_known_pair_names(cols):
    p, r = cols
    out = standardize(Dataset.from_dict({p: ["Q"], r: ["A"], "meta": ["m"]}), system="S.", verbose=False)
    assert out[0] == {"meta": "m", "messages": turns(("system", "S."), ("user", "Q"), ("assistant", "A"))}


def test_standardize_alpaca():
    ds = Dataset.from_dict({"instruction": ["Translate.", "Name a prime."], "input": ["Hola", ""], "output": ["Hello", "7"],
                            "category": ["t", "m"]})
    assert detect_schema(ds) == "alpaca"
    out = standardize(ds, verbose=False)
    assert out.column_names == ["category", "messages"]
    assert out["messages"] == [turns(("user", "Translate.\n\nHola"), ("assistant", "Hello")),
                               turns(("user", "Name a prime."), ("assistant", "7"))]
    no_input = standardize(Dataset.from_dict({"instruction": ["Hi"], "output": ["Hello"]}), verbose=False)
    assert no_input[0]["messages"] == turns(("user", "Hi"), ("assistant", "Hello"))


def test_standardize_sharegpt_maps_role_names(capsys):
    ds = Dataset.from_list([{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                                               {"from": "gpt", "value": "A"}], "id": "x"}])
    out = standardize(ds)
    assert "ShareGPT" in capsys.readouterr().out
    assert out[0] == {"id": "x", "messages": turns(("system", "S"), ("user", "Q"), ("assistant", "A"))}
    assert validate(out).ok


def test_standardize_prompt_completion_both_kinds():
    plain = standardize(Dataset.from_dict({"prompt": ["The sky is"], "completion": [" blue."]}), verbose=False)
    assert plain[0]["messages"] == turns(("user", "The sky is"), ("assistant", " blue."))
    conv = Dataset.from_list([{"prompt": turns(("system", "S"), ("user", "Q")), "completion": turns(("assistant", "A"))}])
    assert standardize(conv, verbose=False)[0]["messages"] == turns(("system", "S"), ("user", "Q"), ("assistant", "A"))


def test_standardize_messages_passthrough_and_datasetdict():
    ds = sample_dataset()
    assert standardize(ds["train"], verbose=False) is ds["train"]
    dd = standardize(DatasetDict({"train": Dataset.from_dict({"question": ["Q"], "answer": ["A"]}),
                                  "test": Dataset.from_dict({"question": ["Q2"], "answer": ["A2"]})}), verbose=False)
    assert list(dd) == ["train", "test"] and dd["test"][0]["messages"][1]["content"] == "A2"


def test_standardize_rows_as_list():
    out = standardize([{"question": "Q", "answer": "A"}], verbose=False)
    assert isinstance(out, Dataset) and out[0]["messages"] == turns(("user", "Q"), ("assistant", "A"))


def test_unknown_schema_names_columns_seen_and_expected():
    with pytest.raises(DatasetFormatError) as e: standardize(Dataset.from_dict({"foo": ["a"], "bar": ["b"]}))
    msg = str(e.value)
    assert "['foo', 'bar']" in msg and "messages" in msg and "instruction" in msg and "prompt_column=" in msg
    with pytest.raises(DatasetFormatError, match="not in the dataset"):
        standardize(Dataset.from_dict({"q": ["a"], "a": ["b"]}), prompt_column="q", response_column="answer")
    with pytest.raises(DatasetFormatError, match="plain language-modelling"): standardize(Dataset.from_dict({"text": ["a"]}))
    with pytest.raises(DatasetFormatError, match="Unknown schema"): standardize(Dataset.from_dict({"q": ["a"]}), schema="csv")
    assert set(SCHEMAS) == {"messages", "sharegpt", "alpaca", "prompt_completion", "pairs"}


# ---------------------------------------------------------------- validation: one row per problem

BAD = {
    "missing_messages": [{"messages": None}, {"other": 1}, {"messages": "Hi"}, {"messages": []}, None, 7, ["a"],
                         {"messages": {"role": "user", "content": "Hi"}}],
    "not_a_dict": [{"messages": ["Hi", {"role": "assistant", "content": "Hello"}]},
                   {"messages": [{"role": "user", "content": "Hi"}, None]}, {"messages": [3, 4]}],
    "missing_key": [{"messages": [{"role": "user"}, {"role": "assistant", "content": "A"}]},
                    {"messages": [{"content": "Hi"}, {"role": "assistant", "content": "A"}]},
                    {"messages": [{"role": "user", "content": "Hi"}, {"role": None, "content": None}]},
                    {"messages": [{}, {"role": "assistant", "content": "A"}]}],
    "unknown_role": [{"messages": turns(("human", "Hi"), ("gpt", "Hello"))},
                     {"messages": turns(("user", "Hi"), ("function", "x"), ("assistant", "A"))},
                     {"messages": [{"role": 1, "content": "Hi"}, {"role": "assistant", "content": "A"}]}],
    "empty_content": [{"messages": turns(("user", "Hi"), ("assistant", ""))},
                      {"messages": turns(("user", " \n\t"), ("assistant", "A"))}],
    "invisible_content": [{"messages": turns(("user", "Hi"), ("assistant", "\u200b"))},
                          {"messages": turns(("user", "\u200c\u200d \u2060"), ("assistant", "A"))},
                          {"messages": turns(("user", "Hi"), ("assistant", "\ufeff\n"))}],
    "tool_out_of_order": [{"messages": turns(("user", "Weather?"), ("tool", "19 C"), ("assistant", "19 C."))},
                          {"messages": turns(("user", "Weather?"), ("assistant", "<tool_call>w</tool_call>"), ("tool", "19 C"),
                                             ("user", "And?"), ("assistant", "19 C."))}],
    "tool_calls_not_rendered": [{"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None,
                                 "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": "{}"}}]}]}],
    "non_string_content": [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 4}]},
                           {"messages": [{"role": "user", "content": ["a", "b"]}, {"role": "assistant", "content": "A"}]},
                           {"messages": [{"role": "user", "content": {"text": "x"}}, {"role": "assistant", "content": "A"}]}],
    "system_not_first": [{"messages": turns(("user", "Hi"), ("system", "S"), ("assistant", "A"))},
                         {"messages": turns(("system", "S"), ("user", "Hi"), ("assistant", "A"), ("system", "T"),
                                            ("user", "Q"), ("assistant", "B"))}],
    "roles_not_alternating": [{"messages": turns(("user", "Hi"), ("user", "?"), ("assistant", "A"))},
                              {"messages": turns(("assistant", "A"), ("user", "Hi"), ("assistant", "B"))},
                              {"messages": turns(("system", "S"), ("assistant", "A"), ("user", "Q"), ("assistant", "B"))},
                              {"messages": turns(("user", "Hi"), ("assistant", "A"), ("assistant", "B"))}],
    "no_assistant_turn": [{"messages": turns(("user", "Hi"))}, {"messages": turns(("system", "S"), ("user", "Hi"))}],
    "last_turn_not_assistant": [{"messages": GOOD["messages"] + turns(("user", "Thanks"))}],
    "duplicate": [GOOD, {"messages": [dict(m) for m in GOOD["messages"]], "source": "other metadata"}],
}

CASES = [(k, r) for k, rows in BAD.items() for r in rows]

def storable(row):
    "Can Arrow hold this row in a column next to GOOD?"
    try: Dataset.from_list([GOOD, row]); return isinstance(row, dict) and "messages" in row
    except Exception: return False


@pytest.mark.parametrize("kind,row", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_each_problem_is_found_alone(kind, row):
    report = validate([GOOD, row])
    assert report.issues[0].problem and report.issues[0].kind in PROBLEMS
    assert [(i.row, i.kind) for i in report.issues] == [(1, kind)], report.issues
    issue = report.issues[0]
    assert issue.problem and issue.hint == PROBLEMS[kind] and issue.field.startswith("messages")
    if storable(row):  # a Dataset of the same rows gives the same report
        as_dataset = validate(Dataset.from_list([GOOD, row]))
        assert [(i.row, i.kind, i.field, i.problem) for i in as_dataset.issues] == [(i.row, i.kind, i.field, i.problem) for i in report.issues]


def test_too_long_needs_a_tokenizer(tok):
    long = to_messages("tell me everything " * 200, "ok")
    assert validate([GOOD, long]).ok  # no tokenizer: lengths are unknown
    report = validate([GOOD, long], tok, max_length=64)
    assert [(i.row, i.kind) for i in report.issues] == [(1, "too_long")]
    assert report.summary["truncated_rows"] == 1 and report.summary["share_truncated"] == 0.5
    assert report.lengths[1] > 64 >= report.lengths[0] > 0
    assert validate([GOOD, long], tok, max_length=None).ok


def test_template_error_is_an_issue_not_a_crash(offline_dir):
    tok = AutoTokenizer.from_pretrained(offline_dir)
    tok.chat_template = ("{% for m in messages %}{% if 'BOOM' in m['content'] %}{{ raise_exception('boom') }}{% endif %}"
                         "{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}")
    rows = [GOOD, to_messages("BOOM", "A"), to_messages("Q", "A")]
    report = validate(rows, tok, batch_size=3)
    assert [(i.row, i.kind) for i in report.issues] == [(1, "template_error")] and "boom" in report.issues[0].problem
    assert report.lengths[0] > 0 and report.lengths[2] > 0 and report.lengths[1] == -1


def test_malformed_mixed_dataset_one_issue_per_bad_row_no_exception(tok):
    bad = [r for _, r in CASES if r is not GOOD and not (isinstance(r, dict) and r.get("source") == "other metadata")]
    good = [to_messages(f"Question {i}?", f"Answer {i}.") for i in range(20)]
    rows = good[:10] + bad + good[10:]
    report = validate(rows, tok, max_length=512)
    assert sorted(report.bad_rows) == list(range(10, 10 + len(bad)))
    assert len(report.issues) == len(bad)  # each bad row has exactly one problem, reported once
    assert all(isinstance(i, DataIssue) and i.kind in PROBLEMS for i in report.issues)
    cleaned = report.clean(rows)
    assert len(cleaned) == 20 and validate(cleaned, tok).ok
    assert set(report.dropped) == set(range(10, 10 + len(bad)))


def test_fuzzed_rows_never_crash(tok):
    rng = random.Random(0)
    junk = [None, 0, 1.5, "", "text", [], {}, [None], {"role": "user"}, b"bytes", ("user", "hi"), {"content": 3}]
    rows = []
    for i in range(300):
        row = {"messages": [dict(m) for m in GOOD["messages"]]}
        for _ in range(rng.randint(0, 3)):
            where = rng.choice(["row", "messages", "message", "role", "content", "extra"])
            if where == "row": row = rng.choice(junk)
            elif not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]: continue
            elif where == "messages": row["messages"] = rng.choice(junk)
            elif where == "message": row["messages"][rng.randrange(len(row["messages"]))] = rng.choice(junk)
            elif where == "extra": row["messages"].append(rng.choice([{"role": "user", "content": "more"}, rng.choice(junk)]))
            else:
                m = row["messages"][rng.randrange(len(row["messages"]))]
                if isinstance(m, dict): m[where] = rng.choice(junk + ["assistant", "system", "bot"])
        rows.append(row)
    report = validate(rows, tok, max_length=64)
    assert report.bad_rows and len(report.bad_rows) < 300
    kept = report.clean(rows)
    assert validate(kept, tok, max_length=64).ok
    again = validate(kept.to_list())
    assert again.ok


def test_valid_tool_turns_are_not_problems(tok):
    chat = turns(("user", "Weather in Lima?"), ("assistant", '<tool_call>{"name": "w"}</tool_call>'), ("tool", "19 C"),
                 ("tool", "humid"), ("assistant", "19 C and humid."), ("user", "Thanks!"), ("assistant", "You're welcome."))
    report = validate([GOOD, {"messages": chat}], tok)
    assert report.ok, report.issues
    text = tok.apply_chat_template(chat, tokenize=False)
    assert "<｜tool▁output▁begin｜>19 C<｜tool▁output▁end｜>" in text and "<｜tool▁outputs▁end｜>19 C and humid." in text


def test_dataset_follows_indices_and_chunks():
    ds = sample_dataset()["train"]
    picked = ds.select([3, 0, 3, 1])  # an indices mapping over the Arrow table
    report = validate(picked)
    assert [(i.row, i.kind, i.problem) for i in report.issues] == [(2, "duplicate", "exact copy of row 0")]
    from datasets import concatenate_datasets
    two_chunks = concatenate_datasets([ds.select(range(5)), ds.select(range(2))])
    assert [i.row for i in validate(two_chunks).issues] == [5, 6]


def test_known_crashes_are_clear_errors_or_issues(tok):
    "The crashes listed in issue #16: each is now an issue or an SFTCourseError."
    numbers = Dataset.from_list([{"messages": [{"role": "user", "content": 2}, {"role": "assistant", "content": 4}]}] * 3)
    assert [i.kind for i in validate(numbers, tok).issues] == ["non_string_content"] * 3  # was an IndexError
    nones = Dataset.from_list([{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": None}]}] * 3)
    assert [i.kind for i in validate(nones, tok).issues] == ["missing_key"] * 3
    with pytest.raises(DataValidationError, match="no rows"): validate([])  # was "ok", then StopIteration in TRL
    with pytest.raises(DataValidationError, match="StopIteration"): validate(sample_dataset()["test"].select([]))
    with pytest.raises(DatasetFormatError, match="row 1, column 'answer'"):  # was the text "['a', 'b']" in the data
        standardize([{"question": "Q", "answer": "A"}, {"question": "Q2", "answer": ["a", "b"]}], verbose=False)
    with pytest.raises(DatasetFormatError, match="column 'output'"):
        standardize([{"instruction": "Q", "output": {"text": "A"}}], verbose=False)
    with pytest.raises(DatasetFormatError, match="needs the columns"):  # the wrong columns: was a KeyError
        standardize(Dataset.from_dict({"question": ["Q"], "answer": ["A"]}), schema="sharegpt")
    with pytest.raises(DatasetFormatError, match="not a list of turns"):
        standardize([{"conversations": "Hi there"}], verbose=False)
    with pytest.raises(DatasetFormatError, match="not a string"):  # was a TypeError from Jinja
        show_loss_mask({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "A"}]}, tok)
    with pytest.raises(DatasetFormatError, match="empty list"): show_loss_mask({"messages": []}, tok)  # was an IndexError
    with pytest.raises(DatasetFormatError, match="None"): show_loss_mask({"text": None}, tok)
    mask = show_loss_mask(turns(("user", "Hi"), ("assistant", "")), tok)  # empty content renders, with a note
    assert any("empty_content" in n for n in mask.notes)
    assert show_loss_mask({"prompt": "2+2=", "completion": 4}, tok).n_trained > 0  # was an AttributeError


def test_no_messages_column_is_a_format_error():
    with pytest.raises(DatasetFormatError, match="standardize"): validate(Dataset.from_dict({"prompt": ["a"], "completion": ["b"]}))
    with pytest.raises(DatasetFormatError, match="one split at a time"): validate(sample_dataset())
    with pytest.raises(DatasetFormatError, match="no row has a `messages` key"): validate([{"instruction": "a"}])


# ---------------------------------------------------------------- the report

def test_summary_and_display(tok):
    ds = sample_dataset()["train"]
    report = validate(ds, tok, max_length=96)
    s = report.summary
    assert s["rows"] == 480 and s["turns"]["min"] >= 2 and s["turns"]["max"] <= 9
    assert s["tokens"]["p50"] <= s["tokens"]["p90"] <= s["tokens"]["p99"] <= s["tokens"]["max"]
    assert s["truncated_rows"] == int((report.lengths > 96).sum()) == len(report.too_long_rows) > 0
    assert 0 < s["share_truncated"] < 1 and 0.3 < s["assistant_share"] < 0.95
    assert s["problems"] == {"too_long": s["truncated_rows"]} and not report.ok and not report.all_too_long
    md = report._repr_markdown_()
    assert "| rows |" in md and "too_long" in md and "max_length=96" in md
    bad = validate([GOOD, {"messages": [{"role": "us|er", "content": "a"}, {"role": "assistant", "content": "b"}]}])
    assert "us\\|er" in bad._repr_markdown_()  # a | in a problem cannot break the table
    fig = report.plot_lengths()
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() == "tokens" and ax.get_ylabel() == "conversations"
    assert ax.lines[0].get_xdata()[0] == 96 and ax.get_legend() is not None
    with pytest.raises(ConfigError, match="tokenizer"): validate(ds).plot_lengths()
    assert "ok=True" in repr(validate(ds))


def test_assistant_share_exact_with_assistant_only_loss(tok):
    ds = sample_dataset()["test"]
    report = validate(ds, tok, assistant_only_loss=True)
    masks = [show_loss_mask(r, tok, assistant_only_loss=True) for r in ds]
    exact = sum(m.n_trained for m in masks) / sum(len(m.input_ids) for m in masks)
    assert report.summary["assistant_share_basis"] == "all rows"
    assert report.summary["assistant_share"] == pytest.approx(exact)
    assert report.lengths.tolist() == [len(m.input_ids) for m in masks]


def test_every_row_too_long_is_visible_and_clean_refuses(tok):
    ds = sample_dataset()["test"]
    report = validate(ds, tok, max_length=4)
    assert report.all_too_long and report.summary["share_truncated"] == 1.0
    assert set(report.too_long_rows) == set(range(len(ds)))
    with pytest.raises(DataValidationError, match="Every row is longer than max_length=4"): report.clean(ds)
    assert len(report.clean(ds, drop_too_long=False)) == len(ds)


def test_clean_records_and_checks_size():
    rows = [GOOD, {"messages": None}, GOOD, to_messages("Q", "")]
    report = validate(rows)
    out = report.clean(rows)
    assert len(out) == 1 and report.dropped == {1: ["missing_messages"], 2: ["duplicate"], 3: ["empty_content"]}
    assert "dropped 3 rows" in report._repr_markdown_()
    with pytest.raises(DataValidationError, match="describes 4 rows"): report.clean(rows[:2])
    with pytest.raises(DataValidationError, match="3 problems in 3 rows"): report.raise_if_bad()
    ds = Dataset.from_list([GOOD, GOOD, to_messages("Q", "A")])
    r2 = validate(ds)
    assert r2.clean(ds)["messages"] == [GOOD["messages"], to_messages("Q", "A")["messages"]]


def test_validate_clean_then_sfttrainer_trains(offline_dir, tmp_path):
    "The Done-when check: validate, clean, and a few SFTTrainer steps on the offline model."
    from trl import SFTConfig, SFTTrainer
    tok = AutoTokenizer.from_pretrained(offline_dir)
    rows = sample_dataset()["train"].to_list()[:64] + [r for _, r in CASES]
    report = validate(rows, tok, max_length=256)
    assert not report.ok
    clean = report.clean(rows)
    assert validate(clean, tok, max_length=256).ok
    args = SFTConfig(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8, learning_rate=3e-3,
                     logging_steps=1, save_strategy="no", report_to="none", max_length=256, bf16=False, use_cpu=True,
                     disable_tqdm=True, assistant_only_loss=True)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(offline_dir), args=args, train_dataset=clean,
                         processing_class=tok)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 4 and len(losses) == 4 and all(np.isfinite(losses))


# ---------------------------------------------------------------- loss masks vs SFTTrainer

def _prepared(offline_dir, rows, tmp_path, **kw):
    from trl import SFTConfig, SFTTrainer
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, **kw)
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(offline_dir), args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=AutoTokenizer.from_pretrained(offline_dir)).train_dataset


ROWS = {
    "messages": [r for r in sample_dataset()["train"].to_list()[:12]],
    "conv_prompt_completion": [{"prompt": turns(("system", "S."), ("user", "What is 17*3?")),
                                "completion": turns(("assistant", "<think>\nmultiply\n</think>\n\n51."))},
                               {"prompt": turns(("user", "Hi")), "completion": turns(("assistant", "Hello!"))}],
    "prompt_completion": [{"prompt": "The capital of France is", "completion": " Paris."},
                          {"prompt": "2+2=", "completion": "4<｜end▁of▁sentence｜>"}],
    "text": [{"text": "Question: what is 2+2?\nAnswer: 4."}, {"text": "Hello world."}],
}
SETTINGS = [("messages", {}), ("messages", {"assistant_only_loss": True}), ("conv_prompt_completion", {}),
            ("conv_prompt_completion", {"completion_only_loss": False}), ("conv_prompt_completion", {"assistant_only_loss": True}),
            ("prompt_completion", {}), ("prompt_completion", {"completion_only_loss": False}), ("text", {}),
            ("messages", {"max_length": 40}), ("conv_prompt_completion", {"max_length": 12}),
            ("messages", {"max_length": 30, "assistant_only_loss": True})]


@pytest.mark.parametrize("fmt,kw", SETTINGS, ids=[f"{f}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for f, kw in SETTINGS])
def test_show_loss_mask_matches_sfttrainer_labels(offline_dir, tmp_path, fmt, kw):
    tok = AutoTokenizer.from_pretrained(offline_dir)
    rows = ROWS[fmt]
    prepared = _prepared(offline_dir, rows, tmp_path, **kw)
    masks = [show_loss_mask(row, tok, **kw) for row in rows]
    kept = [m for m in masks if any(m.trained)]  # TRL drops rows that truncation leaves without a trained token
    assert len(prepared) == len(kept)
    assert all(any("SFTTrainer drops this row" in n for n in m.notes) for m in masks if not any(m.trained))
    for i, mask in enumerate(kept):
        n = len(prepared[i]["input_ids"])
        assert prepared[i]["input_ids"] == mask.input_ids[:n]
        assert [l != -100 for l in prepared[i]["labels"]] == mask.trained[:n]
        assert not any(mask.trained[n:])  # what truncation cut carries no loss
        assert "".join(mask.pieces) == tok.decode(mask.input_ids)


def test_show_loss_mask_displays(tok):
    row = to_messages("What is 17*3?", "<think>\n17*3 = 51\n</think>\n\n51.", system="Be brief.")
    default, aol = show_loss_mask(row, tok), show_loss_mask(row, tok, assistant_only_loss=True)
    assert default.n_trained == len(default.input_ids) and "17*3 = 51\n</think>" not in "".join(default.pieces)
    assert "17*3 = 51\n</think>" in "".join(aol.pieces) and 0 < aol.n_trained < len(aol.input_ids)
    md, text = aol._repr_markdown_(), str(aol)
    assert "<mark>«&lt;｜Assistant｜&gt;" in md and "style=" not in md and "<pre>" in md  # visible on GitHub: no inline styles
    assert not hasattr(aol, "_repr_html_")
    assert text.splitlines()[0].startswith(f"{aol.n_trained} of {len(aol.input_ids)} tokens carry loss")
    assert "«<｜Assistant｜><think>" in text and text.rstrip().endswith("<｜end▁of▁sentence｜>»")
    assert show_loss_mask(row["messages"], tok).input_ids == default.input_ids  # a bare list of turns works too
    with pytest.raises(ConfigError, match="conversational"): show_loss_mask({"text": "hi"}, tok, assistant_only_loss=True)
    with pytest.raises(DatasetFormatError): show_loss_mask({"foo": 1}, tok)


def test_show_loss_mask_unknown_template_with_assistant_only_loss(offline_dir):
    tok = AutoTokenizer.from_pretrained(offline_dir)
    tok.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}"
    with pytest.raises(ConfigError, match="generation"): show_loss_mask(GOOD, tok, assistant_only_loss=True)
    with pytest.raises(ConfigError, match="generation"): validate([GOOD], tok, assistant_only_loss=True)
    report = validate([GOOD], tok)  # the default setting works, without an assistant share
    assert report.ok and report.summary["assistant_share"] is None


# ---------------------------------------------------------------- smoltalk

def test_load_smoltalk_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(HubAccessError) as e: load_smoltalk()
    msg = str(e.value)
    assert "HF_HUB_OFFLINE" in msg and "sample_dataset()" in msg and "everyday-conversations" in msg
    with pytest.raises(HubAccessError): load_smoltalk("smol-magpie-ultra", n=10, streaming=True)


def test_load_smoltalk_unknown_config():
    with pytest.raises(ConfigError, match="smol-magpie-ultra"): load_smoltalk("default")


# ---------------------------------------------------------------- train/inference parity, on DeepSeek's template

def test_parity_think_prefill_on_deepseek_template(tok):
    from sft_course.offline import deepseek_chat_template
    assert tok.chat_template == deepseek_chat_template()  # the stand-in carries DeepSeek-R1-Distill's own template
    row = to_messages("Capital of France?", "Paris.")
    report = template_parity([row], tok)
    assert [(i.row, i.turn, i.kind) for i in report.issues] == [(0, 1, "prefill")]
    assert "<think>\\n" in report.issues[0].detail and not report.ok
    fixed = add_empty_reasoning([row])
    assert fixed[0]["messages"][1]["content"] == EMPTY_REASONING + "Paris." == "<think>\n</think>\n\nParis."
    assert template_parity(fixed, tok).ok
    prompt = tok.apply_chat_template(row["messages"][:1], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    trained = tok.apply_chat_template(fixed[0]["messages"], tokenize=True, return_dict=True,
                                      chat_template=get_training_chat_template(tok))["input_ids"]
    assert trained[:len(prompt)] == prompt  # generation continues from tokens the model was trained on


def test_parity_multi_turn_reasoning(tok):
    row = {"messages": turns(("user", "17*3?"), ("assistant", "<think>\n17*3 = 51\n</think>\n\n51."),
                             ("user", "And 17*4?"), ("assistant", "<think>\n68\n</think>\n\n68."))}
    report = template_parity([row], tok)
    assert [(i.turn, i.kind) for i in report.issues] == [(3, "history")]
    assert "messages[1]" in report.issues[0].detail and report.summary["answers_in_parity"] == 1
    plain = {"messages": turns(("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye"), ("assistant", "Bye!"))}
    assert [(i.turn, i.kind) for i in template_parity([plain], tok).issues] == [(1, "prefill"), (3, "prefill")]
    assert [(i.turn, i.kind) for i in template_parity(add_empty_reasoning([plain]), tok).issues] == [(3, "history")]


def test_parity_pad_is_eos(tok):
    from transformers import DataCollatorForLanguageModeling as ClassicCollator
    assert tok.pad_token_id == tok.eos_token_id
    rows = add_empty_reasoning(sample_dataset()["test"].to_list()[:8])
    report = template_parity(rows, tok)
    s = report.summary
    assert s["pad_is_eos"] and s["collator"] == "DataCollatorForLanguageModeling" and s["collator_rows"] == 8
    assert s["end_masked_rows"] == 0 and "keep their labels" in report._repr_markdown_()
    classic = ClassicCollator(tok, mlm=False)  # masks padding by token id: with pad = eos, every end token too
    by_id = template_parity(rows, tok, collator=lambda examples: classic([{"input_ids": e["input_ids"]} for e in examples]))
    assert by_id.counts["end_masked"] == 8 and by_id.summary["end_masked_rows"] == 8
    with pytest.raises(ConfigError, match="collator failed"): template_parity(rows, tok, collator=lambda examples: 1 / 0)


def test_parity_end_token_truncation_and_bad_rows(offline_dir, tok):
    long = add_empty_reasoning([to_messages("Tell me a story. " * 30, "Once upon a time.")])
    assert [i.kind for i in template_parity(long, tok, max_length=32).issues] == ["truncated_end"]
    assert template_parity(long, tok, max_length=None).ok
    no_end = AutoTokenizer.from_pretrained(offline_dir)  # a template whose answers carry no end token
    no_end.chat_template = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}"
                            "{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}{% endfor %}")
    assert [i.kind for i in template_parity([GOOD], no_end).issues] == ["end_not_trained"]
    report = template_parity([GOOD, {"messages": None}, {"messages": [{"role": "user", "content": 3}]}], tok)
    assert report.summary["skipped_rows"] == [1, 2] and report.summary["answers"] == 1
    with pytest.raises(DataValidationError): template_parity([], tok)
    with pytest.raises(ConfigError): template_parity([GOOD], None)


def test_dataframe_from_to_pandas_validates_and_checks_parity(tok):
    "Dataset.to_pandas() holds each `messages` as a numpy array: validate and template_parity read it as the list it was."
    rows = [GOOD, to_messages("Hi", "Hello!"), GOOD]
    df = Dataset.from_list(rows).to_pandas()
    assert isinstance(df["messages"][0], np.ndarray)
    assert [(i.row, i.kind) for i in validate(df, tok).issues] == [(2, "duplicate")]
    parity = template_parity(df, tok)
    assert parity.summary["skipped_rows"] == [] and parity.summary["answers"] == 3
    assert [(i.row, i.kind) for i in parity.issues] == [(i.row, i.kind) for i in template_parity(rows, tok).issues]
    assert template_parity(add_empty_reasoning(rows), tok).ok
    assert show_loss_mask(df.iloc[0].to_dict(), tok).n_trained > 0


def test_parity_report_that_checked_no_answer_is_not_ok(tok):
    bad = template_parity([{"messages": None}, {"messages": [{"role": "user", "content": 3}]}], tok)
    assert bad.summary["skipped_rows"] == [0, 1] and bad.summary["answers"] == 0 and not bad.issues
    assert not bad.ok and "no answer was checked" in bad._repr_markdown_() and "run validate" in bad._repr_markdown_()
    no_answer = template_parity([{"messages": turns(("user", "Hi"))}], tok)
    assert not no_answer.ok and "no row has an answer" in no_answer._repr_markdown_()


def test_parity_token_boundary(offline_dir):
    merged = AutoTokenizer.from_pretrained(offline_dir)
    merged.add_tokens(["\n\n"])  # as DeepSeek's (Qwen2's) tokenizer, "\n\n" is one token
    two_newlines = [{"messages": turns(("user", "Hi"), ("assistant", "<think>\n\n</think>\n\nHello!"))}]
    report = template_parity(two_newlines, merged)
    assert [i.kind for i in report.issues] == ["token_boundary"]
    assert template_parity(add_empty_reasoning([to_messages("Hi", "Hello!")]), merged).ok


def test_add_empty_reasoning_shapes_and_rows_left_alone():
    ds = sample_dataset()
    fixed = add_empty_reasoning(ds)
    assert isinstance(fixed, DatasetDict) and list(fixed) == ["train", "test"]
    assert add_empty_reasoning(fixed)["train"]["messages"] == fixed["train"]["messages"]  # idempotent
    answers = [m["content"] for r in fixed["train"] for m in r["messages"] if m["role"] == "assistant"]
    assert all(a.startswith("<think>\n") for a in answers)
    keep = [{"messages": turns(("user", "Hi"), ("assistant", "<think>\nhm\n</think>\n\nHello"))},  # already reasons
            {"messages": turns(("user", "Hi"), ("assistant", " "))},  # empty: validate must still see it
            {"messages": turns(("user", "Hi"), ("assistant", "\u200b"))},
            {"messages": None}, {"messages": "text"}, None, 3, {"other": 1}, {"messages": [None, 3, {"role": "assistant"}]}]
    assert add_empty_reasoning(keep) == keep
    tool = {"messages": turns(("user", "W?"), ("assistant", "<tool_call>w</tool_call>"), ("tool", "19 C"), ("assistant", "19 C."))}
    out = add_empty_reasoning([tool])[0]["messages"]
    assert out[1]["content"].startswith(EMPTY_REASONING) and out[3]["content"] == "19 C."  # no <think> after tool outputs
    assert isinstance(add_empty_reasoning(ds["test"]), Dataset)
    with pytest.raises(DatasetFormatError): add_empty_reasoning(Dataset.from_dict({"text": ["a"]}))
    with pytest.raises(DatasetFormatError): add_empty_reasoning("text")


def test_fold_system_prompt():
    ds = sample_dataset()["train"]
    folded = fold_system_prompt(ds)
    assert sum(r["messages"][0]["role"] == "system" for r in ds) == 144
    assert sum(r["messages"][0]["role"] == "system" for r in folded) == 0
    i = next(k for k, r in enumerate(ds) if r["messages"][0]["role"] == "system")
    assert folded[i]["messages"][0]["content"] == ds[i]["messages"][0]["content"] + "\n\n" + ds[i]["messages"][1]["content"]
    assert validate(folded).ok and fold_system_prompt(folded)["messages"] == folded["messages"]
    blank = [to_messages(" ", "Could you say more?", system="Be kind.")]
    assert fold_system_prompt(blank) == blank  # an empty question stays visible to validate


# ---------------------------------------------------------------- property-based: random rows never crash the checkers

_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8), st.binary(max_size=4))
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=6)
_text = st.lists(st.sampled_from(list("ab <>|\n\t ") + ["\u200b", "\ufeff", "é", "中", "<think>", "</think>", "<｜User｜>"]),
                 max_size=8).map("".join)
_message = st.one_of(_value, st.fixed_dictionaries({}, optional={
    "role": st.one_of(st.sampled_from(["system", "user", "assistant", "tool", "human", ""]), _value),
    "content": st.one_of(_text, _value), "tool_calls": _value}))
_row = st.one_of(_value, st.fixed_dictionaries({}, optional={"messages": st.one_of(_value, st.lists(_message, max_size=5)),
                                                             "source": _value}))
_rows = st.lists(_row, max_size=6)
_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_course_errors(fn, *args, **kw):
    try: return fn(*args, **kw)
    except SFTCourseError: return None


@_settings
@given(rows=_rows)
def test_random_rows_never_crash_validate_or_the_transforms(rows):
    report = _only_course_errors(validate, rows)
    if report is not None:
        assert all(i.kind in PROBLEMS and i.hint == PROBLEMS[i.kind] for i in report.issues)
        assert len(report.bad_rows) <= len(rows)
    for fn in (add_empty_reasoning, fold_system_prompt, standardize):
        _only_course_errors(fn, rows)
    for r in rows:
        assert all(i.kind in PROBLEMS for i in check_row(r))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows)
def test_random_rows_never_crash_the_tokenizer_checks(tok, rows):
    _only_course_errors(validate, rows, tok, max_length=16)
    _only_course_errors(template_parity, rows, tok, max_length=16)
    for r in rows[:2]: _only_course_errors(show_loss_mask, r, tok, assistant_only_loss=True)


@_settings
@given(prompt=_value | _text, response=_value | _text, system=_value, context=_value, metadata=_value)
def test_random_pairs_never_crash_to_messages(prompt, response, system, context, metadata):
    row = _only_course_errors(to_messages, prompt, response, system=system, context=context, metadata=metadata)
    if row is not None: assert isinstance(row["messages"], list)


_visible = st.text(min_size=1, max_size=20).filter(lambda t: t.strip() and not t.isspace() and any(c.isprintable() and not c.isspace() for c in t))


@st.composite
def _valid_conversation(draw):
    n = draw(st.integers(1, 3))
    msgs = ([{"role": "system", "content": draw(_visible)}] if draw(st.booleans()) else [])
    for _ in range(n):
        msgs += [{"role": "user", "content": draw(_visible)}, {"role": "assistant", "content": draw(_visible)}]
        if draw(st.booleans()):
            msgs += [{"role": "tool", "content": draw(_visible)}, {"role": "assistant", "content": draw(_visible)}]
    return {"messages": msgs}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_valid_conversation(), min_size=1, max_size=4, unique_by=lambda r: str(r["messages"])))
def test_valid_rows_never_raise_and_are_ok(tok, rows):
    assert all(check_row(r) == [] for r in rows)
    report = validate(rows, tok, max_length=None)
    assert report.ok, report.issues
    assert validate(Dataset.from_list(rows), tok, max_length=None).ok
    fixed = add_empty_reasoning(fold_system_prompt(rows))
    assert validate(fixed, tok, max_length=None).ok
    assert set(template_parity(fixed, tok, max_length=None).counts) <= {"history"}
    for r in rows: show_loss_mask(r, tok, assistant_only_loss=True)
