"""Generated time-series competitions: daily sales of many stores, and one series of daily visitors.

* ``store-sales-forecast``: 20 stores × 2 years of daily sales (trend, weekly and yearly seasonality,
  promotions, a slowly wandering level per store, noise); test = the next 28 days of every store;
  RMSE. The wandering level is what lag features of the target see and calendar features cannot.
* ``daily-visitors``: one series of 3 years of daily visitors; test = the next 14 days; MAE.

Seeded and deterministic; numpy and pandas only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SALES_SLUG = "store-sales-forecast"
VISITORS_SLUG = "daily-visitors"


def _write(out: Path, slug: str, train: pd.DataFrame, test: pd.DataFrame, target: str, metric: str,
           description: str) -> None:
    public, private = out / slug / "public", out / slug / "private"
    public.mkdir(parents=True, exist_ok=True)
    private.mkdir(parents=True, exist_ok=True)
    train.to_csv(public / "train.csv", index=False)
    test.drop(columns=[target]).to_csv(public / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], target: float(train[target].mean().round(2))}).to_csv(
        public / "sample_submission.csv", index=False)
    (public / "description.md").write_text(description)
    test[["id", target]].to_csv(private / "answers.csv", index=False)
    (private / "grading.json").write_text(json.dumps({"metric": metric, "id_column": "id", "target_column": target}))


def store_sales(rng: np.random.Generator, n_stores: int = 20, n_days: int = 730, horizon: int = 28) -> pd.DataFrame:
    """Daily sales of ``n_stores`` stores over ``n_days + horizon`` days, every row with its sales."""
    days = pd.date_range("2023-01-02", periods=n_days + horizon, freq="D")
    t = np.arange(len(days))
    weekly = np.array([0.85, 0.9, 0.95, 1.0, 1.15, 1.35, 1.2])[days.day_of_week]
    yearly = 1.0 + 0.2 * np.sin(2 * np.pi * (days.day_of_year.to_numpy() - 80) / 365.25)
    frames = []
    for store in range(n_stores):
        base = rng.uniform(80, 300)
        growth = rng.uniform(-0.0002, 0.0008)
        # A level that wanders slowly (AR(1) with a half-life of about 70 days): weeks ahead it is still
        # close to today's, which lags of the target know and the calendar does not.
        level = np.zeros(len(t))
        for i in range(1, len(t)):
            level[i] = 0.99 * level[i - 1] + rng.normal(0, 0.025)
        promo = (rng.random(len(t)) < 0.12).astype(int)
        lift = rng.uniform(0.15, 0.4)
        mean = base * (1 + growth * t) * weekly * yearly * np.exp(level) * (1 + lift * promo)
        sales = np.maximum(0.0, mean + rng.normal(0, 0.06 * base, size=len(t)))
        frames.append(pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "store": f"S{store + 1:02d}",
                                    "promo": promo, "sales": sales.round(2)}))
    frame = pd.concat(frames, ignore_index=True).sort_values(["date", "store"], kind="stable")
    return frame.reset_index(drop=True)


def daily_visitors(rng: np.random.Generator, n_days: int = 1095, horizon: int = 14) -> pd.DataFrame:
    """One series of daily visitors with a holiday flag, weekly and yearly seasonality and a wandering level."""
    days = pd.date_range("2022-01-01", periods=n_days + horizon, freq="D")
    t = np.arange(len(days))
    weekly = np.array([0.8, 0.85, 0.9, 0.95, 1.1, 1.4, 1.3])[days.day_of_week]
    yearly = 1.0 + 0.3 * np.sin(2 * np.pi * (days.day_of_year.to_numpy() - 100) / 365.25)
    level = np.zeros(len(t))
    for i in range(1, len(t)):
        level[i] = 0.995 * level[i - 1] + rng.normal(0, 0.03)
    holiday = (rng.random(len(t)) < 0.03).astype(int)
    mean = 500 * (1 + 0.0003 * t) * weekly * yearly * np.exp(level) * (1 + 0.5 * holiday)
    visitors = np.maximum(0, np.round(mean + rng.normal(0, 25, size=len(t))))
    return pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "holiday": holiday, "visitors": visitors.astype(int)})


def _split(frame: pd.DataFrame, horizon_start: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = frame.copy()
    frame.insert(0, "id", np.arange(len(frame)))
    is_test = frame["date"] >= horizon_start
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


def make(out: Path) -> list[str]:
    """Write this shape's competitions under ``out``; their slugs."""
    sales = store_sales(np.random.default_rng(16))
    train, test = _split(sales, sorted(sales["date"].unique())[-28])
    _write(out, SALES_SLUG, train, test, "sales", "rmse", (
        "# Store sales forecast\n\n"
        "Daily sales of 20 stores over two years. For each `id` in test.csv (every store on each of the\n"
        "28 days after the last day of train.csv) predict `sales`. `promo` says whether a promotion ran\n"
        "that day; it is known in advance.\n\n"
        "## Evaluation\n\n"
        "Submissions are evaluated on the Root Mean Squared Error (RMSE) between the predicted and the\n"
        "actual sales (lower is better).\n\n"
        "## Submission File\n\n"
        "A header and one row per test id: `id,sales`.\n"))
    visitors = daily_visitors(np.random.default_rng(17))
    train, test = _split(visitors, sorted(visitors["date"].unique())[-14])
    _write(out, VISITORS_SLUG, train, test, "visitors", "mae", (
        "# Daily visitors\n\n"
        "Daily visitor counts of one museum over three years. For each `id` in test.csv (the 14 days\n"
        "after the last day of train.csv) predict `visitors`. `holiday` marks public holidays.\n\n"
        "## Evaluation\n\n"
        "Submissions are evaluated on the Mean Absolute Error (MAE) between the predicted and the actual\n"
        "visitors (lower is better).\n\n"
        "## Submission File\n\n"
        "A header and one row per test id: `id,visitors`.\n"))
    return [SALES_SLUG, VISITORS_SLUG]
