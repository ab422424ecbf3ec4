"""Lambda bundles stay small: nothing a Lambda imports pulls in pandas, numpy, scikit-learn or LightGBM."""

from __future__ import annotations

import json
import subprocess
import sys

from batch_agent.service import names

HEAVY = ("pandas", "numpy", "sklearn", "lightgbm", "scipy")
# Imported lazily by the step Lambdas at run time (authors, validation, metric direction).
LAZY_STEP_IMPORTS = (
    "batch_agent.solver.templates",
    "batch_agent.llm.author",
    "batch_agent.solver.submission",
    "batch_agent.solver.metrics",
    "batch_agent.kaggle.leaderboard",
)


def _heavy_modules_after_importing(modules: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))\n"
    )
    env = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        names.ENV_JOBS_TABLE: "t",
        names.ENV_ARTIFACTS_BUCKET: "b",
        names.ENV_STATE_MACHINE_ARN: "arn:aws:states:us-east-1:123456789012:stateMachine:p",
        # No network here: the API's warm-up read would go to AWS.
        names.ENV_WARM_CLIENTS: "false",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_step_handlers_and_what_they_import_lazily_load_no_numeric_library() -> None:
    handler_modules = [h.rsplit(".", 1)[0] for h in names.STEP_HANDLERS.values()]

    assert _heavy_modules_after_importing(handler_modules + list(LAZY_STEP_IMPORTS)) == []


def test_api_handler_loads_no_numeric_library() -> None:
    assert _heavy_modules_after_importing([names.API_HANDLER.rsplit(".", 1)[0]]) == []


def test_api_handler_loads_no_http_or_kaggle_client() -> None:
    # The API reads a slug from a URL; that must not cost the official client's import at cold start.
    http_and_kaggle = ("requests", "kaggle", "kagglesdk", "anthropic")
    assert _heavy_modules_after_importing([names.API_HANDLER.rsplit(".", 1)[0]], http_and_kaggle) == []


def test_the_check_sees_a_heavy_import() -> None:
    assert _heavy_modules_after_importing(["batch_agent.solver.profiling"]) != []


def test_leaderboard_sync_handler_and_its_kaggle_download_load_no_numeric_library() -> None:
    modules = [names.LEADERBOARD_SYNC_HANDLER.rsplit(".", 1)[0], "batch_agent.kaggle.leaderboard_download"]
    assert _heavy_modules_after_importing(modules) == []
def test_starter_handler_loads_no_numeric_http_or_kaggle_library() -> None:
    starter = names.STARTER_HANDLER.rsplit(".", 1)[0]
    assert _heavy_modules_after_importing([starter], (*HEAVY, "requests", "kaggle", "kagglesdk", "anthropic")) == []
