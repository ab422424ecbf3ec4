"""Related tables: which extra CSVs count as related, and the per-key features they become."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver import related_tables
from batch_agent.solver.related_tables import flatten
from batch_agent.solver.shapes import flatten_competition

ROOT = Path(__file__).resolve().parents[3]
# The development competitions sit beside the checkout (../shared) where they exist; CI has none.
SHARED = next((p for p in (ROOT.parent / "shared" / "competitions", ROOT.parent.parent / "shared" / "competitions")
               if p.is_dir()), ROOT / "no-shared-competitions")


def write(folder: Path, **frames: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    (folder / "description.md").write_text("# Churn\n\nEvaluated on area under the ROC curve.\n")
    return folder


def customers(folder: Path, **extra: pd.DataFrame) -> Path:
    train = pd.DataFrame({"customer_id": [1, 2, 3, 4], "age": [30, 40, 50, 60], "churned": [0, 1, 0, 1]})
    test = pd.DataFrame({"customer_id": [5, 6], "age": [35, 45]})
    sample = pd.DataFrame({"customer_id": [5, 6], "churned": [0.5, 0.5]})
    return write(folder, train=train, test=test, sample_submission=sample, **extra)


EVENTS = pd.DataFrame({
    # customer 1: three events out of date order; 2 and 5: one each; 6: two; 3 and 4: none.
    "customer_id": [1, 1, 1, 2, 5, 6, 6],
    "date": ["2024-01-05", "2024-01-01", "2024-01-11", "2024-01-03", "2024-01-21", "2024-01-02", "2024-01-04"],
    "amount": [20.0, 10.0, 30.0, 5.0, 7.0, 1.0, 3.0],
    "kind": ["a", "a", "b", "b", "a", "a", "a"],
})


@pytest.mark.parametrize("folder", [
    ROOT / "examples" / "breast-cancer-diagnosis",
    *sorted(SHARED.glob("*/public")),
], ids=lambda p: p.parent.name if p.name == "public" else p.name)
def test_single_table_competitions_are_not_related_tables(folder: Path, tmp_path: Path) -> None:
    assert flatten(folder, tmp_path / "flat") is None
    assert flatten_competition(folder, tmp_path / "flat")[1].kind == "table"
    assert not (tmp_path / "flat").exists()


def test_one_to_many_events_become_per_key_aggregates_joined_onto_train_and_test(tmp_path: Path) -> None:
    folder = customers(tmp_path / "data", transactions=EVENTS)
    found = flatten(folder, tmp_path / "flat")
    assert found is not None
    flat, shape = found
    train = pd.read_csv(flat / "train.csv").set_index("customer_id")
    test = pd.read_csv(flat / "test.csv").set_index("customer_id")
    assert shape.kind == "multi_table"
    first = train.loc[1]
    assert first["transactions__rows__count"] == 3
    assert first["transactions__amount__sum"] == 60.0
    assert first["transactions__amount__mean"] == 20.0
    assert first["transactions__amount__min"] == 10.0
    assert first["transactions__amount__max"] == 30.0
    assert first["transactions__amount__std"] == pytest.approx(10.0)
    assert first["transactions__amount__last"] == 30.0  # the latest by date, not the last in the file
    assert first["transactions__kind__a__count"] == 2
    assert first["transactions__kind__b__count"] == 1
    assert first["transactions__kind__n_unique"] == 2
    # The table's latest date is 2024-01-21: customer 1's events ran from day -20 to day -10.
    assert first["transactions__date__days_since_first"] == 20
    assert first["transactions__date__days_since_last"] == 10
    assert first["transactions__date__span_days"] == 10
    # Customers without events: zero counts, unknown aggregates.
    no_events = train.loc[3]
    assert no_events["transactions__rows__count"] == 0
    assert no_events["transactions__kind__a__count"] == 0
    assert math.isnan(no_events["transactions__amount__mean"])
    assert math.isnan(no_events["transactions__date__days_since_last"])
    assert test.loc[6, "transactions__rows__count"] == 2
    assert test.loc[6, "transactions__amount__last"] == 3.0
    assert test.loc[5, "transactions__date__days_since_last"] == 0
    # The main table is kept as it was, target included, and the sample submission is unchanged.
    assert list(train.columns[:2]) == ["age", "churned"]
    assert (flat / "sample_submission.csv").read_bytes() == (folder / "sample_submission.csv").read_bytes()
    assert (flat / "description.md").read_text() == (folder / "description.md").read_text()
    assert (flat / shape.original_dir / "transactions.csv").is_file()


def test_summary_names_each_related_file_its_key_its_rows_and_columns(tmp_path: Path) -> None:
    found = flatten(customers(tmp_path / "data", transactions=EVENTS), tmp_path / "flat")
    assert found is not None
    summary = found[1].summary
    assert "transactions.csv: key customer_id, one-to-many" in summary
    assert "7 rows" in summary
    assert "columns: customer_id, date, amount, kind" in summary


def test_a_lookup_table_keyed_by_a_column_of_train_is_joined_row_for_row(tmp_path: Path) -> None:
    train = pd.DataFrame({"id": [1, 2, 3, 4], "store_id": ["S1", "S2", "S1", "S3"], "sales": [10, 20, 12, 30]})
    test = pd.DataFrame({"id": [5, 6], "store_id": ["S2", "S3"]})
    stores = pd.DataFrame({"store_id": ["S1", "S2", "S3"], "size": [100, 250, 400], "type": ["a", "b", "b"]})
    folder = write(tmp_path / "data", train=train, test=test, stores=stores,
                   sample_submission=pd.DataFrame({"id": [5, 6], "sales": 0}))
    found = flatten(folder, tmp_path / "flat")
    assert found is not None
    flat, shape = found
    assert list(pd.read_csv(flat / "train.csv")["stores__size"]) == [100, 250, 100, 400]
    assert list(pd.read_csv(flat / "test.csv")["stores__type"]) == ["b", "b"]
    assert "stores.csv: key store_id, one-to-one lookup" in shape.summary
    # Stores repeat in train but test's stores are not new: ordinary folds are right.
    assert shape.group_column is None


def test_the_target_is_never_taken_from_a_related_table(tmp_path: Path) -> None:
    events = EVENTS.assign(churned=[1, 1, 1, 0, 0, 1, 1])
    found = flatten(customers(tmp_path / "data", transactions=events), tmp_path / "flat")
    assert found is not None
    train = pd.read_csv(found[0] / "train.csv")
    assert [c for c in train.columns if "churned" in c] == ["churned"]
    assert list(train["churned"]) == [0, 1, 0, 1]


def test_keys_join_whatever_their_written_form(tmp_path: Path) -> None:
    events = EVENTS.assign(customer_id=[f"{v}.0" for v in EVENTS["customer_id"]])
    found = flatten(customers(tmp_path / "data", transactions=events), tmp_path / "flat")
    assert found is not None
    counts = pd.read_csv(found[0] / "train.csv")["transactions__rows__count"]
    assert list(counts) == [3, 1, 0, 0]


def test_ids_and_values_of_train_and_test_are_written_back_exactly(tmp_path: Path) -> None:
    train = pd.DataFrame({"id": ["007", "008", "009"], "x": ["1.50", "2", ""], "y": [0, 1, 0]})
    test = pd.DataFrame({"id": ["010", "011"], "x": ["3.25", "4"]})
    events = pd.DataFrame({"id": ["007", "007", "010"], "v": [1, 2, 3]})
    folder = tmp_path / "data"
    folder.mkdir()
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": ["010", "011"], "y": 0.5}).to_csv(folder / "sample_submission.csv", index=False)
    events.to_csv(folder / "events.csv", index=False)
    found = flatten(folder, tmp_path / "flat")
    assert found is not None
    lines = (found[0] / "train.csv").read_text().splitlines()
    assert lines[1].startswith("007,1.50,0,2")
    assert lines[3].startswith("009,,0,0")


def test_tables_that_share_no_values_with_test_are_left_alone(tmp_path: Path) -> None:
    # A file of train's labels (or of anything about train only) is no source of features for test.
    labels = pd.DataFrame({"customer_id": [1, 2, 3, 4], "churn_reason": ["price", "move", "none", "price"]})
    unrelated = pd.DataFrame({"city": ["x", "y"], "population": [10, 20]})
    folder = customers(tmp_path / "data", train_extra=labels, cities=unrelated)
    assert flatten(folder, tmp_path / "flat") is None


def test_description_files_are_not_tables(tmp_path: Path) -> None:
    columns = pd.DataFrame({"customer_id": [1, 5], "meaning": ["x", "y"]})
    folder = customers(tmp_path / "data", column_descriptions=columns)
    assert flatten(folder, tmp_path / "flat") is None


def test_rows_of_one_entity_are_grouped_when_test_holds_new_entities(tmp_path: Path) -> None:
    # Orders of customers: train's customers have several orders each, test's customers are new.
    train = pd.DataFrame({"order_id": range(8), "customer_id": [1, 1, 2, 2, 3, 3, 4, 4], "y": [0, 1] * 4})
    test = pd.DataFrame({"order_id": [8, 9, 10], "customer_id": [5, 5, 6]})
    profile = pd.DataFrame({"customer_id": [1, 2, 3, 4, 5, 6], "segment": list("abcabc")})
    folder = write(tmp_path / "data", train=train, test=test, profiles=profile,
                   sample_submission=pd.DataFrame({"order_id": [8, 9, 10], "y": 0.5}))
    found = flatten(folder, tmp_path / "flat")
    assert found is not None
    assert found[1].group_column == "customer_id"
    assert "folds group by customer_id" in found[1].summary


def test_a_time_split_between_train_and_test_asks_for_time_ordered_folds(tmp_path: Path) -> None:
    days = pd.date_range("2024-01-01", periods=6).strftime("%Y-%m-%d")
    train = pd.DataFrame({"id": range(4), "date": days[:4], "store_id": [1, 2, 1, 2], "sales": [1, 2, 3, 4]})
    test = pd.DataFrame({"id": [4, 5], "date": days[4:], "store_id": [1, 2]})
    stores = pd.DataFrame({"store_id": [1, 2], "size": [10, 20]})
    folder = write(tmp_path / "data", train=train, test=test, stores=stores,
                   sample_submission=pd.DataFrame({"id": [4, 5], "sales": 0}))
    found = flatten(folder, tmp_path / "flat")
    assert found is not None
    assert found[1].time_column == "date"
    shuffled = test.assign(date=days[1:3])
    shuffled.to_csv(folder / "test.csv", index=False)
    again = flatten(folder, tmp_path / "flat2")
    assert again is not None and again[1].time_column is None


def test_a_table_above_the_row_cap_is_sampled_with_a_log_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    events = pd.DataFrame({"customer_id": rng.choice([1, 2, 3, 4, 5, 6], size=5000),
                           "amount": rng.uniform(0, 1, 5000)})
    folder = customers(tmp_path / "data", transactions=events)
    monkeypatch.setattr(related_tables, "MAX_ROWS", 1000)
    monkeypatch.setattr(related_tables, "_CHUNK_ROWS", 700)
    with caplog.at_level(logging.WARNING, logger="batch_agent.solver.related_tables"):
        found = flatten(folder, tmp_path / "flat")
    assert found is not None
    assert "transactions.csv has 5000 rows: reading a uniform sample of about 1000" in caplog.text
    total = pd.concat([pd.read_csv(found[0] / "train.csv"), pd.read_csv(found[0] / "test.csv")])
    assert 800 < total["transactions__rows__count"].sum() < 1200
    assert "5,000 rows (features from a uniform sample of" in found[1].summary


def test_generated_columns_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    wide = EVENTS.assign(**{f"m{i}": np.arange(len(EVENTS)) * i for i in range(10)})
    folder = customers(tmp_path / "data", transactions=wide)
    monkeypatch.setattr(related_tables, "MAX_COLUMNS", 12)
    with caplog.at_level(logging.WARNING, logger="batch_agent.solver.related_tables"):
        found = flatten(folder, tmp_path / "flat")
    assert found is not None
    train = pd.read_csv(found[0] / "train.csv")
    assert len([c for c in train.columns if c.startswith("transactions__")]) == 12
    assert "transactions__rows__count" in train.columns
    assert "keeping the first 12" in caplog.text


def test_an_unreadable_extra_file_is_skipped_and_the_readable_ones_still_count(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = customers(tmp_path / "data", transactions=EVENTS)
    (folder / "broken.csv").write_bytes(b"customer_id,x\n1,\xff\xfe\n\"5,unterminated\n")
    (folder / "empty.csv").write_text("")
    with caplog.at_level(logging.WARNING, logger="batch_agent.solver.related_tables"):
        found = flatten(folder, tmp_path / "flat")
    assert "broken.csv is not read as a related table" in caplog.text
    assert found is not None
    assert "transactions.csv" in found[1].summary
    assert "broken.csv" not in found[1].summary


def test_recent_windows_count_and_sum_only_the_events_of_their_last_days(tmp_path: Path) -> None:
    events = pd.DataFrame({
        "customer_id": [1, 1, 1, 2, 5, 6],
        "date": ["2024-01-01", "2024-03-15", "2024-04-20", "2024-01-10", "2024-04-30", "2024-04-29"],
        "amount": [100.0, 10.0, 1.0, 50.0, 7.0, 3.0],
    })
    found = flatten(customers(tmp_path / "data", transactions=events), tmp_path / "flat")
    assert found is not None
    train = pd.read_csv(found[0] / "train.csv").set_index("customer_id")
    # The latest date is 2024-04-30: the last 30 days start after 2024-03-31, the last 90 after 2024-01-31.
    assert train.loc[1, "transactions__rows__count_30d"] == 1
    assert train.loc[1, "transactions__amount__sum_30d"] == 1.0
    assert train.loc[1, "transactions__rows__count_90d"] == 2
    assert train.loc[1, "transactions__amount__sum_90d"] == 11.0
    # Customer 2 bought only long ago, customer 3 never: no recent purchases either way.
    assert train.loc[2, "transactions__rows__count_30d"] == 0
    assert train.loc[2, "transactions__amount__sum_90d"] == 0
    assert train.loc[3, "transactions__rows__count_90d"] == 0
    assert train.loc[3, "transactions__amount__sum_30d"] == 0


def test_the_downloaded_train_table_is_not_among_the_original_files_programs_can_read(tmp_path: Path) -> None:
    found = flatten(customers(tmp_path / "data", transactions=EVENTS), tmp_path / "flat")
    assert found is not None
    flat, shape = found
    # A copy of the labels beside the flat tables would hand a program the hidden holdout's answers.
    assert sorted(shape.replaced_files) == ["test.csv", "train.csv"]
    assert sorted(p.name for p in (flat / "original").iterdir()) == [
        "description.md", "sample_submission.csv", "transactions.csv"]
