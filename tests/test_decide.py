"The SFT decision: the widget follows its controls, bad answers raise what/where/fix, every answer gets a sound verdict."
import itertools
from dataclasses import fields, replace

import ipywidgets as widgets
import pytest

from sft_course.decide import (DOMAIN_ADAPTATION, FACTORS, TEMPLATE_CONTROL, VERDICTS, Assessment, Reason, UseCase,
                               assess, assessment_widget)
from sft_course.errors import SFTCourseError

CHAT = UseCase("chat", prompting_tried=True, prompting_sufficient=True, consistent_style=True, validated_examples=200)


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


def test_empty_widget_shows_the_error_not_a_verdict():
    w = assessment_widget()
    assert w.assessment is None and isinstance(w.error, SFTCourseError)
    assert "Cannot assess yet" in w.result.value and "Nothing is answered" in w.result.value
    assert "fix:" in w.result.value


def test_setting_controls_updates_verdict_and_html():
    w = assessment_widget()
    w.controls["strict_output_schema"].value = True
    assert w.assessment.verdict == "prompt_first" and w.assessment.factors == ["template_control"]
    assert "Prompt first" in w.result.value and "strict output schema" in w.result.value
    assert w.controls["prompting_sufficient"].disabled

    w.controls["prompting_tried"].value = True
    assert not w.controls["prompting_sufficient"].disabled
    assert w.use_case.prompting_sufficient is False  # an unticked, enabled box is an answer: "no"
    assert w.assessment.verdict == "sft_recommended"
    assert "SFT recommended" in w.result.value and "Prompt first" not in w.result.value

    w.controls["strict_output_schema"].value = False
    assert w.assessment.verdict == "prompt_first" and w.assessment.factors == []  # falls short, but on nothing named

    w.controls["prompting_sufficient"].value = True
    assert w.assessment.verdict == "sft_not_needed" and "SFT not needed" in w.result.value

    w.controls["cost_pressure"].value = True
    assert w.assessment.verdict == "sft_recommended" and w.assessment.factors == ["cost"]

    w.controls["validated_examples"].value = 5000
    assert "5,000" in w.result.value and not w.assessment.reasons_for("data")


def test_widget_starts_from_a_use_case_and_round_trips_it():
    w = assessment_widget(CHAT)
    assert w.use_case == CHAT and w.assessment.verdict == "sft_not_needed"
    assert repr(w) == "AssessmentWidget('chat': sft_not_needed)"
    html_before = w.result.value
    w.controls["prompting_sufficient"].value = False
    assert w.assessment.verdict == "sft_recommended" and w.result.value != html_before


def test_untried_prompting_hides_the_sufficiency_answer():
    "The widget cannot produce the 'sufficient but never tried' contradiction: a disabled box counts as None."
    w = assessment_widget(CHAT)
    w.controls["prompting_tried"].value = False
    assert w.controls["prompting_sufficient"].disabled and w.controls["prompting_sufficient"].value is True
    assert w.use_case.prompting_sufficient is None and w.assessment.verdict == "prompt_first"


def test_widget_shows_contradictions_and_recovers():
    w = assessment_widget(CHAT)
    w.controls["performance_gap"].value = True  # sufficient and a gap: contradiction
    assert w.assessment is None and "contradict" in w.result.value and "performance_gap" in w.result.value
    w.controls["performance_gap"].value = False
    assert w.assessment.verdict == "sft_not_needed"
    w.controls["validated_examples"].value = -5
    assert w.assessment is None and "validated_examples" in w.result.value
    w.controls["validated_examples"].value = 0
    assert w.assessment.verdict == "sft_not_needed"


def test_widget_html_escapes_the_name():
    w = assessment_widget(replace(CHAT, name="<script>x</script>"))
    assert "<script>" not in w.result.value and "&lt;script&gt;" in w.result.value


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
])
def test_bad_answers_raise_what_where_fix(uc, field, words):
    with pytest.raises(SFTCourseError) as exc:
        assess(uc)
    e = exc.value
    assert words in str(e)
    assert field in e.where and e.fix and e.what
    assert "where:" in str(e) and "fix:" in str(e)


def test_not_a_use_case():
    with pytest.raises(SFTCourseError, match="needs a UseCase"):
        assess({"prompting_tried": True})


def test_a_single_answer_is_enough_to_assess():
    assert assess(UseCase(validated_examples=10)).verdict == "prompt_first"
    assert assess(UseCase(cost_pressure=True)).verdict == "prompt_first"


# --- every combination of answers -------------------------------------------------------------------------------

NEEDS = list(TEMPLATE_CONTROL) + list(DOMAIN_ADAPTATION)


def _all_use_cases():
    "Every prompting state x gap x cost x (no need, each single need, all needs) x example counts."
    for tried, sufficient in [(False, None), (True, True), (True, False)]:
        for gap, cost in itertools.product([False, True], repeat=2):
            for needs in [()] + [(n,) for n in NEEDS] + [tuple(NEEDS)]:
                for n in (0, 999, 1000):
                    yield UseCase("combo", prompting_tried=tried, prompting_sufficient=sufficient, performance_gap=gap,
                                  cost_pressure=cost, validated_examples=n, **{k: True for k in needs})


def test_every_combination_gets_a_sound_verdict_or_a_clear_error():
    seen = set()
    for uc in _all_use_cases():
        try: a = assess(uc)
        except SFTCourseError as e:
            empty = not (uc.prompting_tried or uc.performance_gap or uc.cost_pressure or uc.validated_examples
                         or any(getattr(uc, n) for n in NEEDS))
            assert empty or (uc.prompting_sufficient and uc.performance_gap), (uc, e)
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
        if a.verdict == "sft_recommended": assert bool(a.reasons_for("data")) == (uc.validated_examples < 1000)
        md = a._repr_markdown_()
        assert md.startswith("### ") and all(s in md for s in a.next_steps)
    assert seen == set(VERDICTS)
