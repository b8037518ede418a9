"The SFT decision: the widget follows its controls, bad answers raise what/where/fix, every answer gets a sound verdict."
import itertools, json
from dataclasses import fields, replace
from pathlib import Path

import ipywidgets as widgets
import pytest

from sft_course.decide import (DOMAIN_ADAPTATION, FACTORS, TEMPLATE_CONTROL, VERDICTS, Assessment, Reason, UseCase,
                               assess, assessment_widget)
from sft_course.errors import SFTCourseError, UseCaseError

CHAT = UseCase("chat", prompting_tried=True, prompting_sufficient=True, consistent_style=True, validated_examples=200)


def _shown(w) -> str:
    "The markdown the widget's result area displays."
    (out,) = w.result.outputs
    return out["data"]["text/markdown"]


# --- the widget -------------------------------------------------------------------------------------------------

def test_widget_exposes_a_readable_control_per_question():
    w = assessment_widget()
    assert isinstance(w, widgets.VBox)
    answerable = {f.name for f in fields(UseCase)} - {"name"}
    assert set(w.controls) == answerable
    for name, c in w.controls.items():
        assert c in w.children, name
        assert len(c.description) > 15 and "_" not in c.description, name  # a sentence, not a field name
        assert isinstance(c, widgets.IntText if name == "validated_examples" else widgets.Checkbox), name
    assert "sft-assessment-result" in w.result._dom_classes and w.result in w.children
    assert isinstance(w.result, widgets.Output)  # markdown through sft_course.display, no HTML copy of it


def test_empty_widget_shows_the_error_not_a_verdict():
    w = assessment_widget()
    assert w.assessment is None and isinstance(w.error, SFTCourseError)
    assert "Cannot assess yet" in _shown(w) and "Nothing is answered" in _shown(w)
    assert "fix:" in _shown(w)


def test_setting_controls_updates_verdict_and_html():
    w = assessment_widget()
    w.controls["strict_output_schema"].value = True
    assert w.assessment.verdict == "prompt_first" and w.assessment.factors == ["template_control"]
    assert "Prompt first" in _shown(w) and "strict output schema" in _shown(w)
    assert w.controls["prompting_sufficient"].disabled

    w.controls["prompting_tried"].value = True
    assert not w.controls["prompting_sufficient"].disabled
    assert w.use_case.prompting_sufficient is False  # an unticked, enabled box is an answer: "no"
    assert w.assessment.verdict == "sft_recommended"
    assert "SFT recommended" in _shown(w) and "Prompt first" not in _shown(w)

    w.controls["strict_output_schema"].value = False
    assert w.assessment.verdict == "prompt_first" and w.assessment.factors == []  # falls short, but on nothing named

    w.controls["prompting_sufficient"].value = True
    assert w.assessment.verdict == "sft_not_needed" and "SFT not needed" in _shown(w)

    assert w.controls["small_model_tried"].disabled  # only cost pressure gives the small model a meaning
    w.controls["cost_pressure"].value = True
    assert not w.controls["small_model_tried"].disabled and w.controls["small_model_sufficient"].disabled
    # prompting works on a large model that costs too much: the prompted small model comes before SFT
    assert w.assessment.verdict == "prompt_first" and w.assessment.factors == ["cost"]
    assert "small model" in w.assessment.reasons_for("cost")[0]

    w.controls["small_model_tried"].value = True  # ... and falls short (its box is unticked): now SFT pays
    assert w.use_case.small_model_sufficient is False
    assert w.assessment.verdict == "sft_recommended" and w.assessment.factors == ["cost"]

    w.controls["small_model_sufficient"].value = True  # ... or it does the job: switch, no training
    assert w.assessment.verdict == "sft_not_needed"
    w.controls["small_model_sufficient"].value = False

    w.controls["validated_examples"].value = 5000
    assert "5,000" in _shown(w) and not w.assessment.reasons_for("data")


def test_widget_starts_from_a_use_case_and_round_trips_it():
    w = assessment_widget(CHAT)
    assert w.use_case == CHAT and w.assessment.verdict == "sft_not_needed"
    assert repr(w) == "AssessmentWidget('chat': sft_not_needed)"
    shown_before = _shown(w)
    w.controls["prompting_sufficient"].value = False
    assert w.assessment.verdict == "sft_recommended" and _shown(w) != shown_before


def test_untried_prompting_hides_the_sufficiency_answer():
    "The widget cannot produce the 'sufficient but never tried' contradiction: a disabled box counts as None."
    w = assessment_widget(CHAT)
    w.controls["prompting_tried"].value = False
    assert w.controls["prompting_sufficient"].disabled and w.controls["prompting_sufficient"].value is True
    assert w.use_case.prompting_sufficient is None and w.assessment.verdict == "prompt_first"


def test_widget_shows_contradictions_and_recovers():
    w = assessment_widget(CHAT)
    w.controls["performance_gap"].value = True  # sufficient and a gap: contradiction
    assert w.assessment is None and "contradict" in _shown(w) and "performance_gap" in _shown(w)
    w.controls["performance_gap"].value = False
    assert w.assessment.verdict == "sft_not_needed"
    w.controls["validated_examples"].value = -5
    assert w.assessment is None and "validated_examples" in _shown(w)
    w.controls["validated_examples"].value = 0
    assert w.assessment.verdict == "sft_not_needed"


def test_widget_html_escapes_the_name():
    w = assessment_widget(replace(CHAT, name="<script>x</script>"))
    assert "<script>" not in _shown(w) and "&lt;script&gt;" in _shown(w)
    assert "<script>" not in w.picture()


def test_widget_carries_a_picture_for_readers_without_a_kernel():
    w = assessment_widget(CHAT)
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    pic = bundle["text/markdown"]
    assert pic.startswith("*A picture of the assessment widget") and "### SFT not needed: chat" in pic
    assert "Prompting was good enough (quality)" in pic and "200" in pic
    w.controls["prompting_sufficient"].value = False
    assert "### SFT recommended: chat" in w._repr_mimebundle_()["text/markdown"]  # the picture follows the state


def test_committed_chapter_shows_the_widget_picture():
    "GitHub and the docs site render the saved notebook: the widget cell's output must carry the markdown picture."
    nb = json.loads((Path(__file__).resolve().parents[1]/"nbs"/"01_when_to_use_sft.ipynb").read_text())
    outs = [o for c in nb["cells"] if c["cell_type"] == "code" and "assessment_widget(chat)" in "".join(c["source"])
            for o in c.get("outputs", [])]
    pictures = ["".join(o["data"]["text/markdown"]) for o in outs if "text/markdown" in o.get("data", {})]
    assert pictures and "### SFT not needed: General chat assistant" in pictures[0]


# --- errors -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("uc, field, words", [
    (UseCase("a", prompting_sufficient=True), "prompting_sufficient", "never tried"),
    (UseCase("a", prompting_sufficient=False, strict_output_schema=True), "prompting_sufficient", "never tried"),
    (UseCase("a", prompting_tried=True), "prompting_sufficient", "not answered"),
    (replace(CHAT, performance_gap=True), "performance_gap", "contradict"),
    (replace(CHAT, validated_examples=-1), "validated_examples", "count"),
    (replace(CHAT, validated_examples=12.5), "validated_examples", "count"),
    (replace(CHAT, validated_examples=True), "validated_examples", "count"),
    (replace(CHAT, strict_output_schema="yes"), "strict_output_schema", "True or False"),
    (replace(CHAT, prompting_sufficient="maybe"), "prompting_sufficient", "None"),
    (UseCase("a"), "UseCase('a')", "Nothing is answered"),
    (replace(CHAT, small_model_sufficient=True), "small_model_sufficient", "never tried"),
    (replace(CHAT, cost_pressure=True, small_model_tried=True), "small_model_sufficient", "not answered"),
    (replace(CHAT, small_model_tried=True, small_model_sufficient=False), "small_model_tried", "cost"),
    (replace(CHAT, prompting_sufficient=False, cost_pressure=True, small_model_tried=True, small_model_sufficient=True),
     "small_model_sufficient", "falls short"),
    (replace(CHAT, small_model_sufficient="no"), "small_model_sufficient", "None"),
    (replace(CHAT, name=3), "name", "text"),
])
def test_bad_answers_raise_what_where_fix(uc, field, words):
    with pytest.raises(UseCaseError) as exc:
        assess(uc)
    e = exc.value
    assert words in str(e)
    assert field in e.where and e.fix and e.what
    assert "where:" in str(e) and "fix:" in str(e)


def test_not_a_use_case():
    with pytest.raises(SFTCourseError, match="needs a UseCase"):
        assess({"prompting_tried": True})
    with pytest.raises(UseCaseError, match="starts from a UseCase"):
        assessment_widget({"prompting_tried": True})


@pytest.mark.parametrize("make, words, fix", [
    (lambda: UseCase(foo=1), "no question called 'foo'", "The questions are:"),
    (lambda: UseCase(promting_tried=True), "no question called 'promting_tried'", "Did you mean prompting_tried?"),
    (lambda: replace(CHAT, cost_presure=True), "cost_presure", "Did you mean cost_pressure?"),
    (lambda: UseCase("a", name="b"), "answered twice", "Give it once"),
    (lambda: UseCase(*["x"] * 40), "at most", "by name"),
    (lambda: CHAT.needs(["consistent_style"]), "one of the two groups", "TEMPLATE_CONTROL"),
    (lambda: assess(CHAT).reasons_for("price"), "no factor called 'price'", "template_control"),
])
def test_bad_input_to_the_api_raises_use_case_errors(make, words, fix):
    "UseCase(foo=1) and friends: a UseCaseError saying what, where and how, never a bare TypeError (#16)."
    with pytest.raises(UseCaseError) as exc:
        make()
    assert words in exc.value.what and exc.value.where and fix in exc.value.fix


def test_use_case_signature_lists_the_questions():
    import inspect
    params = inspect.signature(UseCase).parameters
    assert list(params) == [f.name for f in fields(UseCase)] and params["validated_examples"].default == 0


def test_a_single_answer_is_enough_to_assess():
    assert assess(UseCase(validated_examples=10)).verdict == "prompt_first"
    assert assess(UseCase(cost_pressure=True)).verdict == "prompt_first"


# --- every combination of answers -------------------------------------------------------------------------------

NEEDS = list(TEMPLATE_CONTROL) + list(DOMAIN_ADAPTATION)


TRIED = [(False, None), (True, True), (True, False)]  # (tried, sufficient): untried, good enough, falls short


def _all_use_cases():
    "Every prompting state x small-model state x gap x cost x (no need, each single need, all needs) x example counts."
    for (tried, sufficient), (small_tried, small_sufficient) in itertools.product(TRIED, TRIED):
        for gap, cost in itertools.product([False, True], repeat=2):
            for needs in [()] + [(n,) for n in NEEDS] + [tuple(NEEDS)]:
                for n in (0, 999, 1000):
                    yield UseCase("combo", prompting_tried=tried, prompting_sufficient=sufficient, performance_gap=gap,
                                  cost_pressure=cost, small_model_tried=small_tried, small_model_sufficient=small_sufficient,
                                  validated_examples=n, **{k: True for k in needs})


def test_every_combination_gets_a_sound_verdict_or_a_clear_error():
    seen = set()
    for uc in _all_use_cases():
        try: a = assess(uc)
        except SFTCourseError as e:
            empty = not (uc.prompting_tried or uc.performance_gap or uc.cost_pressure or uc.validated_examples
                         or any(getattr(uc, n) for n in NEEDS))
            contradiction = (uc.prompting_sufficient and uc.performance_gap) or (uc.small_model_tried and not uc.cost_pressure) \
                            or (uc.small_model_sufficient and uc.prompting_sufficient is False)
            assert isinstance(e, UseCaseError) and (empty or contradiction), (uc, e)
            continue
        assert isinstance(a, Assessment) and a.verdict in VERDICTS
        seen.add(a.verdict)
        assert set(a.factors) <= set(FACTORS)
        assert all(isinstance(r, Reason) and r.text for r in a.reasons) and a.next_steps
        # every applying factor has a reason of its own, and no reason cites a factor that does not apply
        assert {r.factor for r in a.reasons} - {"prompting", "data"} == set(a.factors)
        assert ("template_control" in a.factors) == any(getattr(uc, n) for n in TEMPLATE_CONTROL)
        assert ("domain_adaptation" in a.factors) == any(getattr(uc, n) for n in DOMAIN_ADAPTATION)
        assert ("cost" in a.factors) == uc.cost_pressure and ("performance" in a.factors) == uc.performance_gap
        # the rules of the chapter
        if not uc.prompting_tried: assert a.verdict == "prompt_first"
        if a.verdict == "sft_recommended": assert a.factors and uc.prompting_tried
        if uc.prompting_sufficient and not uc.cost_pressure: assert a.verdict == "sft_not_needed"
        # the cost case: a prompted small model is tried before SFT is recommended, and decides
        if uc.prompting_sufficient and uc.cost_pressure:
            want = "prompt_first" if not uc.small_model_tried else "sft_not_needed" if uc.small_model_sufficient else "sft_recommended"
            assert a.verdict == want, (uc, a.verdict)
        if a.verdict == "sft_recommended" and uc.prompting_sufficient:
            assert uc.small_model_tried and uc.small_model_sufficient is False
        if a.verdict == "sft_recommended": assert bool(a.reasons_for("data")) == (uc.validated_examples < 1000)
        md = a._repr_markdown_()
        assert md.startswith("### ") and all(s in md for s in a.next_steps)
    assert seen == set(VERDICTS)
