"""Prompt texts and tool output models: what Claude is told and which answers are accepted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from batch_agent.llm.prompts import (
    MAX_DESCRIPTION_CHARS,
    ChangeRecord,
    ImprovementOutput,
    ModelChoice,
    PlanOutput,
    ProgramOutput,
    RepairOutput,
    all_tools,
    change_memory,
    competition_context,
    describe_plan,
    improve_messages,
    repair_messages,
    system_blocks,
)
from batch_agent.solver.competition import ColumnInfo, CompetitionProfile, DataShape
from batch_agent.solver.plan import AttemptResult, Program

CONTRACT_CODE = (
    "import argparse\np = argparse.ArgumentParser()\np.add_argument('--data')\np.add_argument('--time-budget')\n"
    "# submission.csv oof.csv\n"
)


def profile(**overrides: object) -> CompetitionProfile:
    values: dict[str, object] = {
        "title": "House prices",
        "data_dir": "/data/house",
        "id_column": "Id",
        "target_columns": ["SalePrice"],
        "submission_columns": ["SalePrice"],
        "task": "regression",
        "prediction_format": "value",
        "metric": "rmsle",
        "n_train": 1460,
        "n_test": 1459,
        "features": [
            ColumnInfo(name="LotArea", kind="numeric", dtype="int64", n_unique=1000, missing_fraction=0)
        ],
        "description": "Predict the sale price.",
        "extra_files": ["data_description.txt"],
    }
    values.update(overrides)
    return CompetitionProfile.model_validate(values)


def test_context_names_metric_direction_files_profile_and_description() -> None:
    text = competition_context(profile())
    assert "Metric: rmsle (lower is better)" in text
    assert "train.csv, test.csv, sample_submission.csv, data_description.txt" in text
    assert '"id_column": "Id"' in text and '"name":"LotArea"' in text
    assert text.endswith("Predict the sale price.")
    assert "/data/house" not in text  # programs get the folder as --data, not from the prompt


def test_context_describes_a_non_table_shape_and_its_validation() -> None:
    shape = DataShape(kind="time_series", original_dir="original", time_column="date",
                      summary="20 stores, daily; train 2022-01-01..2023-12-31, test the next 28 days")
    text = competition_context(profile(shape=shape))
    assert "## Data shape: time series" in text
    assert "20 stores, daily" in text
    assert "under original/ in the --data folder" in text
    assert "Validate in time order by date" in text
    assert "## Data shape" not in competition_context(profile())


def test_long_descriptions_and_wide_tables_are_cut() -> None:
    columns = [
        ColumnInfo(name=f"c{i}", kind="numeric", dtype="float64", n_unique=9, missing_fraction=0)
        for i in range(500)
    ]
    text = competition_context(profile(description="x" * (MAX_DESCRIPTION_CHARS + 500), features=columns))
    assert "[description truncated]" in text
    assert "300 more omitted" in text


def test_system_blocks_carry_the_contract_and_cache_only_the_context() -> None:
    instructions, context = system_blocks(profile(), libraries="pandas 3.1")
    assert "python program.py --data DATA_DIR --time-budget SECONDS" in instructions["text"]
    assert "no credentials" in instructions["text"] and "pandas 3.1" in instructions["text"]
    assert "cache_control" not in instructions
    assert context["cache_control"] == {"type": "ephemeral"}


def test_tools_have_schemas_from_the_output_models_in_a_fixed_order() -> None:
    tools = all_tools()
    assert [t["name"] for t in tools] == [
        "plan_solution",
        "write_program",
        "repair_program",
        "improve_program",
    ]
    assert tools[0]["input_schema"]["properties"]["compute"]["enum"] == ["cpu", "gpu"]
    # The explanation comes before the code, so the model reasons first.
    assert list(tools[1]["input_schema"]["properties"]) == ["summary", "code"]


def test_code_in_a_markdown_fence_is_unwrapped() -> None:
    output = ProgramOutput(summary="s", code=f"```python\n{CONTRACT_CODE}```")
    assert output.code == CONTRACT_CODE


def test_code_that_does_not_parse_is_rejected_with_its_line() -> None:
    with pytest.raises(ValidationError, match=r"does not parse: .* line 2"):
        RepairOutput(diagnosis="d", code="x = 1\ndef broken(:\n")


def test_first_draft_must_follow_the_contract_but_changes_need_not_repeat_it() -> None:
    with pytest.raises(ValidationError, match=r"never mentions 'oof\.csv'"):
        ProgramOutput(summary="s", code="import argparse  # --data --time-budget submission.csv\n")
    template_like = "from batch_agent.solver import toolkit\ntoolkit.fit_lightgbm(comp, X, X_test)\n"
    assert ImprovementOutput(change="more seeds", code=template_like).code == template_like


def test_plan_output_is_bounded_and_described_as_approach_text() -> None:
    with pytest.raises(ValidationError):
        PlanOutput(
            approach="a",
            features=[],
            validation="v",
            n_folds=50,
            models=[ModelChoice(family="x")],
            compute="cpu",
            draft_time_fraction=0.5,
        )
    plan = PlanOutput(
        approach="Boosting.",
        features=["log target"],
        validation="5-fold",
        n_folds=5,
        models=[ModelChoice(family="lightgbm", reason="tabular")],
        compute="cpu",
        draft_time_fraction=0.3,
    )
    text = describe_plan(plan)
    assert text.startswith("Boosting.") and "lightgbm (tabular)" in text and "30% drafts" in text


def test_repair_prompt_shows_code_reason_and_only_the_log_tail() -> None:
    program = Program(name="llm-draft-1", code="print('hi')\n", origin="llm-draft")
    failure = AttemptResult(
        number=2,
        program="llm-draft-1",
        origin="llm-draft",
        ok=False,
        seconds=3,
        reason="exit status 1",
        log_tail="A" * 10_000 + "ZeroDivisionError",
        workdir="/w",
    )
    (message,) = repair_messages(program, failure)
    assert "print('hi')" in message["content"] and "exit status 1" in message["content"]
    assert message["content"].count("A") < 7_000 and "ZeroDivisionError" in message["content"]


def test_improving_a_template_explains_its_toolkit_blocks() -> None:
    best = Program(
        name="lgbm", code="from batch_agent.solver import toolkit\ntoolkit.fit_lightgbm(comp, X, X_test)\n",
        origin="template",
    )
    history = [
        AttemptResult(
            number=1, program="lgbm", origin="template", ok=True, cv_score=0.1234567, seconds=12, workdir="/w"
        )
    ]
    changes = [ChangeRecord(program="lgbm", kind="improve", change="more seeds")]
    (message,) = improve_messages("rmsle", best, 0.1234567, history, changes)
    assert "CV rmsle = 0.123457 (lower is better)" in message["content"]
    assert "template written with the toolkit: a features block and a model block" in message["content"]
    assert "- more seeds (improve, lgbm): CV 0.123457" in message["content"]


def test_each_lower_level_of_detail_gives_a_shorter_context_without_the_preview() -> None:
    long_profile = profile(description="rules " * 10_000, preview="Target SalePrice (regression): min 1")
    texts = [competition_context(long_profile, level=level, preview=long_profile.preview) for level in range(3)]

    assert "Target SalePrice (regression)" in texts[0]
    assert all("Target SalePrice" not in t for t in texts[1:])
    assert len(texts[0]) > len(texts[1]) > len(texts[2])
    assert '"preview"' not in texts[0]  # the preview is shown once, as text, not in the profile JSON


def test_lower_levels_cut_the_log_tail_and_the_history() -> None:
    program = Program(name="p", code="print(1)\n", origin="llm-draft")
    failure = AttemptResult(
        number=1, program="p", origin="llm-draft", ok=False, seconds=1, log_tail="L" * 9_000, workdir="/w"
    )
    tails = [repair_messages(program, failure, level=level)[0]["content"].count("L") for level in range(3)]
    assert tails[0] > tails[1] > tails[2]

    history = [
        AttemptResult(number=i, program=f"p{i}", origin="template", ok=True, cv_score=0.5, seconds=1, workdir="/w")
        for i in range(40)
    ]
    rows = [
        improve_messages("rmsle", program, 0.5, history, [], level=level)[0]["content"].count("| template |")
        for level in range(3)
    ]
    assert rows == [30, 8, 3]


def test_change_memory_says_better_or_worse_in_the_metrics_direction() -> None:
    history = [
        AttemptResult(number=1, program="a", origin="llm-improve", ok=True, cv_score=0.30, seconds=1, workdir="/w"),
        AttemptResult(number=2, program="b", origin="llm-improve", ok=True, cv_score=0.20, seconds=1, workdir="/w"),
    ]
    changes = [
        ChangeRecord(program="a", kind="improve", change="log target", parent="t", parent_score=0.25),
        ChangeRecord(program="b", kind="improve", change="more trees", parent="t", parent_score=0.25),
        ChangeRecord(program="c", kind="improve", change="knn", parent="t", parent_score=0.25),
    ]
    text = change_memory(changes, history, "rmsle")  # lower is better
    assert "- log target (improve, a): CV 0.3 from 0.25 (+0.05, worse)" in text
    assert "- more trees (improve, b): CV 0.2 from 0.25 (-0.05, better)" in text
    assert "- knn (improve, c): not run yet" in text
    assert change_memory(changes, history, "rmsle", max_rows=1).startswith("(2 earlier changes not shown)")


def test_the_system_prompt_gives_the_toolkits_api_from_its_docstring() -> None:
    from batch_agent.solver import toolkit

    instructions = system_blocks(profile())[0]["text"]
    assert toolkit.__doc__ is not None and toolkit.__doc__.strip() in instructions
    assert "toolkit.write_outputs(comp, oof, test_pred" in instructions and "fit_knn" in instructions
    assert "Do not write oof.npy or test_pred.npy yourself; toolkit.write_outputs writes them." in instructions


def test_a_first_draft_on_the_toolkit_follows_the_contract_through_load_and_write_outputs() -> None:
    code = (
        "from batch_agent.solver import toolkit\n"
        "comp = toolkit.load()\n"
        "X, X_test = toolkit.tree_features(comp)\n"
        "oof, test_pred = toolkit.fit_lightgbm(comp, X, X_test)\n"
        "toolkit.write_outputs(comp, oof, test_pred, name='lgbm')\n"
    )
    assert ProgramOutput(summary="s", code=code).code == code
    with pytest.raises(ValidationError, match=r"never mentions 'submission\.csv'"):
        ProgramOutput(summary="s", code=code.replace("toolkit.write_outputs(comp, oof, test_pred, name='lgbm')",
                                                     "print(oof)"))
