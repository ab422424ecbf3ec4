"""API Gateway (REST, proxy integration) → FastAPI, through Mangum. Settings are validated at cold start."""

from __future__ import annotations

from mangum import Mangum

from lambdas.api.app import create_app

app = create_app()
handler = Mangum(app, lifespan="off")
