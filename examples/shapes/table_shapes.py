"""Generated related-table competitions: customers in train/test, their transactions in another file.

* ``customer-churn-transactions`` (binary, AUC): will a customer leave? The customers table holds
  a few weakly informative columns; the signal is in ``transactions.csv`` (about 20 rows per
  customer): customers about to leave have stopped buying lately, buy less and pay more fees.
* ``customer-spend-transactions`` (regression, MAE): next month's spend of each customer, from
  the last six months of transactions (rate, amounts, trend) and a branch lookup table
  (``branches.csv``, keyed by the customers' ``branch_id``: one row per branch).

Seeded and deterministic; numpy and pandas only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

N_CUSTOMERS = 4000
TEST_SHARE = 0.25
CATEGORIES = ["groceries", "fuel", "dining", "travel", "online", "fees"]


def make(out: Path) -> list[str]:
    """Write this shape's competitions under ``out``; their slugs."""
    return [_churn(out), _spend(out)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _split(rng: np.random.Generator, n: int) -> np.ndarray:
    """True for test rows."""
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.choice(n, size=int(n * TEST_SHARE), replace=False)] = True
    return is_test


def _transactions(rng: np.random.Generator, ids: np.ndarray, counts: np.ndarray, start: str,
                  last_day: np.ndarray, log_amount: np.ndarray, fee_logit: np.ndarray) -> pd.DataFrame:
    """``counts[i]`` purchases of customer ``ids[i]`` on days in [0, last_day[i]] after ``start``."""
    owner = np.repeat(np.arange(len(ids)), counts)
    day = rng.uniform(0, 1, len(owner)) * last_day[owner]
    logits = np.zeros((len(owner), len(CATEGORIES)))
    logits[:, :-1] = rng.normal(0, 0.3, (len(owner), len(CATEGORIES) - 1))
    logits[:, -1] = fee_logit[owner]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    category = (probs.cumsum(axis=1) > rng.uniform(0, 1, (len(owner), 1))).argmax(axis=1)
    amount = np.exp(log_amount[owner] + rng.normal(0, 0.5, len(owner)))
    fees = category == len(CATEGORIES) - 1
    amount[fees] = rng.choice([5.0, 15.0, 35.0], size=int(fees.sum()))
    stamp = pd.Timestamp(start) + pd.to_timedelta(day, unit="D")
    frame = pd.DataFrame({
        "customer_id": ids[owner],
        "date": stamp.strftime("%Y-%m-%d %H:%M"),
        "amount": amount.round(2),
        "category": np.array(CATEGORIES)[category],
    })
    return frame.sort_values(["date", "customer_id"], kind="stable").reset_index(drop=True)


def _write(out: Path, slug: str, *, train: pd.DataFrame, test: pd.DataFrame, answers: pd.DataFrame,
           sample: pd.DataFrame, extra: dict[str, pd.DataFrame], description: str, metric: str) -> str:
    public, private = out / slug / "public", out / slug / "private"
    public.mkdir(parents=True, exist_ok=True)
    private.mkdir(parents=True, exist_ok=True)
    train.to_csv(public / "train.csv", index=False)
    test.to_csv(public / "test.csv", index=False)
    sample.to_csv(public / "sample_submission.csv", index=False)
    for name, frame in extra.items():
        frame.to_csv(public / name, index=False)
    (public / "description.md").write_text(description)
    answers.to_csv(private / "answers.csv", index=False)
    id_column, target = answers.columns
    (private / "grading.json").write_text(json.dumps({"metric": metric, "id_column": id_column,
                                                       "target_column": target}))
    return slug


def _churn(out: Path) -> str:
    rng = np.random.default_rng(16)
    n = N_CUSTOMERS
    ids = np.arange(100_001, 100_001 + n)
    drift = rng.normal(0, 1, n)  # how far a customer has drifted away: hidden
    churned = (rng.uniform(0, 1, n) < _sigmoid(2.5 * drift - 1.0)).astype(int)
    plan = np.where(drift + rng.normal(0, 2.0, n) < -1.0, "premium",
                    rng.choice(["basic", "plus"], size=n))
    customers = pd.DataFrame({
        "customer_id": ids,
        "age": rng.integers(18, 80, n),
        "region": rng.choice(["north", "east", "south", "west"], size=n),
        "plan": plan,
        "tenure_months": rng.integers(1, 120, n),
    })
    # Drifting customers: fewer purchases, smaller ones, more fees, and none lately.
    counts = rng.poisson(20 * np.exp(-0.25 * drift))
    quiet_days = rng.exponential(12 * np.exp(0.9 * drift))
    last_day = np.clip(365 - quiet_days, 30, 365)
    transactions = _transactions(rng, ids, counts, "2024-01-01", last_day,
                                 log_amount=3.5 - 0.2 * drift, fee_logit=-2.0 + 0.8 * drift)
    is_test = _split(rng, n)
    description = (
        "# Customer churn from transactions\n\n"
        "Predict whether each customer in test.csv leaves the bank in the next quarter (`churned`: 1 if they "
        "leave). train.csv and test.csv hold one row per customer; transactions.csv holds the customers' "
        "card transactions of 2024 (customer_id, date, amount, category).\n\n"
        "## Evaluation\n\n"
        "Submissions are evaluated on area under the ROC curve between the predicted probability and the "
        "observed target.\n\n"
        "## Submission\n\nFor each customer_id in test.csv, the probability that `churned` is 1.\n"
    )
    train = customers[~is_test].assign(churned=churned[~is_test])
    test_ids = ids[is_test]
    return _write(
        out, "customer-churn-transactions", train=train, test=customers[is_test],
        answers=pd.DataFrame({"customer_id": test_ids, "churned": churned[is_test]}),
        sample=pd.DataFrame({"customer_id": test_ids, "churned": 0.5}),
        extra={"transactions.csv": transactions}, description=description, metric="auc",
    )


def _spend(out: Path) -> str:
    rng = np.random.default_rng(61)
    n = N_CUSTOMERS
    ids = np.array([f"CU{i:05d}" for i in range(1, n + 1)])
    branches = pd.DataFrame({
        "branch_id": [f"B{i:02d}" for i in range(1, 13)],
        "city_size": rng.choice(["small", "medium", "large"], size=12),
        "branch_age_years": rng.integers(1, 40, 12),
    })
    branch = rng.integers(0, 12, n)
    city_factor = branches["city_size"].map({"small": 0.9, "medium": 1.0, "large": 1.15}).to_numpy()[branch]
    log_amount = rng.normal(3.7, 0.4, n)  # typical purchase size: hidden
    rate = rng.gamma(4.0, 0.85, n)  # purchases per month: hidden
    trend = rng.normal(0, 0.08, n)  # monthly growth of the rate: hidden
    segment = np.where(log_amount + rng.normal(0, 0.4, n) > 4.0, "premium",
                       np.where(rng.uniform(0, 1, n) < 0.3, "student", "standard"))
    customers = pd.DataFrame({
        "customer_id": ids,
        "branch_id": branches["branch_id"].to_numpy()[branch],
        "age": rng.integers(18, 80, n),
        "segment": segment,
    })
    # Six months of purchases, each month's count from the customer's trending rate.
    frames = []
    for month in range(6):
        counts = rng.poisson(rate * np.exp(trend * (month - 2.5)))
        start = (pd.Timestamp("2024-07-01") + pd.DateOffset(months=month)).strftime("%Y-%m-%d")
        frames.append(_transactions(rng, ids, counts, start, np.full(n, 30.0), log_amount,
                                    fee_logit=np.full(n, -3.0)))
    transactions = pd.concat(frames, ignore_index=True).sort_values(["date", "customer_id"], kind="stable")
    expected = rate * np.exp(trend * 3.5) * np.exp(log_amount + 0.125) * city_factor
    spend = (expected * rng.lognormal(0, 0.15, n)).round(2)
    is_test = _split(rng, n)
    description = (
        "# Next month's spend\n\n"
        "Predict each customer's total card spend in January 2025 (`next_month_spend`). train.csv and "
        "test.csv hold one row per customer; transactions.csv holds their transactions from July to "
        "December 2024 (customer_id, date, amount, category); branches.csv describes each branch "
        "(branch_id, city_size, branch_age_years).\n\n"
        "## Evaluation\n\n"
        "Submissions are evaluated on Mean Absolute Error (MAE) between the predicted and the actual "
        "spend.\n\n"
        "## Submission\n\nFor each customer_id in test.csv, the predicted `next_month_spend`.\n"
    )
    test_ids = ids[is_test]
    return _write(
        out, "customer-spend-transactions", train=customers[~is_test].assign(next_month_spend=spend[~is_test]),
        test=customers[is_test],
        answers=pd.DataFrame({"customer_id": test_ids, "next_month_spend": spend[is_test]}),
        sample=pd.DataFrame({"customer_id": test_ids, "next_month_spend": 0.0}),
        extra={"transactions.csv": transactions.reset_index(drop=True), "branches.csv": branches},
        description=description, metric="mae",
    )
