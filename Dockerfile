# The Batch container for CPU jobs: `python -m batch_agent prepare|train --job-id ID --bucket B --attempt N`.
# Build context: the repository root (see .dockerignore). The job definition supplies the command
# (batch_agent.service.names.BATCH_COMMAND), the KAGGLE_SOLVER_* settings and the Kaggle credentials.
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

# Training programs run as this unprivileged user; scratch space lives in /tmp.
RUN useradd --create-home --uid 10001 solver \
    && mkdir -p /tmp/kaggle /tmp/kaggle-solver \
    && chown solver:solver /tmp/kaggle /tmp/kaggle-solver
USER solver
WORKDIR /home/solver

CMD ["python", "-m", "batch_agent", "--help"]
