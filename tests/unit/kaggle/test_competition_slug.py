from __future__ import annotations

import pytest

from batch_agent.kaggle.urls import competition_slug
from batch_agent.solver.errors import InputError


@pytest.mark.parametrize(
    "url",
    [
        "https://www.kaggle.com/competitions/titanic",
        "https://www.kaggle.com/competitions/titanic/",
        "http://www.kaggle.com/competitions/titanic",
        "https://kaggle.com/competitions/titanic",
        "https://www.kaggle.com/c/titanic",
        "https://www.kaggle.com/c/titanic/data",
        "https://www.kaggle.com/competitions/titanic/data",
        "https://www.kaggle.com/competitions/titanic/leaderboard",
        "https://www.kaggle.com/competitions/titanic/overview/evaluation",
        "https://www.kaggle.com/competitions/titanic?tab=overview",
        "https://www.kaggle.com/competitions/titanic#evaluation",
        "https://www.kaggle.com/competitions/titanic/data?select=train.csv#files",
        "www.kaggle.com/competitions/titanic",
        "kaggle.com/c/titanic",
        "  https://www.kaggle.com/competitions/titanic  ",
        "https://WWW.KAGGLE.COM/competitions/Titanic",
    ],
)
def test_every_competition_url_form_gives_the_slug(url: str) -> None:
    assert competition_slug(url) == "titanic"


def test_slug_with_digits_and_dashes_is_kept() -> None:
    url = "https://www.kaggle.com/competitions/playground-series-s4e1/overview"
    assert competition_slug(url) == "playground-series-s4e1"


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("titanic", "not a URL"),
        ("./data/titanic", "not a URL"),
        ("https://example.com/competitions/titanic", "not a Kaggle URL"),
        ("https://kaggle.com.evil.example/competitions/titanic", "not a Kaggle URL"),
        ("https://www.kaggle.com/datasets/owner/some-data", "not a Kaggle competition URL"),
        ("https://www.kaggle.com/code/owner/notebook", "not a Kaggle competition URL"),
        ("https://www.kaggle.com/competitions", "not a Kaggle competition URL"),
        ("https://www.kaggle.com/", "not a Kaggle competition URL"),
        ("ftp://www.kaggle.com/competitions/titanic", "not a URL"),
        ("https://www.kaggle.com/competitions/bad_slug!", "not a competition slug"),
    ],
)
def test_non_competition_inputs_raise_input_error(url: str, phrase: str) -> None:
    with pytest.raises(InputError, match=phrase):
        competition_slug(url)
