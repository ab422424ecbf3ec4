"""Several first drafts: each after the first is asked to differ from the others."""

from __future__ import annotations

from batch_agent.llm.author import DRAFT_DIRECTIONS, draft_request
from batch_agent.llm.prompts import draft_messages
from batch_agent.solver.plan import Plan

PLAN = Plan(approach="LightGBM on the raw columns", candidates=[])


def test_the_first_draft_is_asked_as_the_plan_says() -> None:
    assert draft_request(draft_messages(PLAN), 0, []) == draft_messages(PLAN)


def test_later_drafts_get_a_direction_of_their_own_and_the_summaries_of_those_written() -> None:
    second = draft_request(draft_messages(PLAN), 1, ["gradient boosting on raw columns"])
    third = draft_request(draft_messages(PLAN), 2, [])

    text = second[-1]["content"]
    assert text.startswith(draft_messages(PLAN)[-1]["content"])
    assert "first draft number 2" in text and "- gradient boosting on raw columns" in text
    assert DRAFT_DIRECTIONS[0] in text and DRAFT_DIRECTIONS[1] in third[-1]["content"]
    # A draft asked while its siblings are still being written says so instead of listing nothing.
    assert "being written at the same time" in third[-1]["content"]
