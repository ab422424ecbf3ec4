"""Errors Kaggle can give, each with a message a person can act on (InputError: CLI exit 2)."""

from __future__ import annotations

import logging

from batch_agent.kaggle.urls import rules_url
from batch_agent.solver.errors import InputError

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- errors


class KaggleError(InputError):
    """Kaggle refused or could not serve a request; the message says what the person can do."""


class KaggleRulesNotAcceptedError(KaggleError):
    def __init__(self, slug: str, detail: str = "") -> None:
        self.rules_url = rules_url(slug)
        reason = f" (Kaggle said: {detail})" if detail else ""
        super().__init__(
            f"Kaggle refused access to competition '{slug}'{reason}. Accept the competition's rules at "
            f"{self.rules_url} while logged in as the account whose API credentials this run uses "
            "(the Kaggle API cannot accept rules), then run again."
        )


class KaggleNotFoundError(KaggleError):
    """The competition (or kernel) does not exist or is not visible to this account."""


class KaggleAuthError(KaggleError):
    """No Kaggle credentials, or Kaggle rejected them."""


class KaggleQuotaError(KaggleError):
    """A Kaggle quota or limit (daily submissions, GPU hours, concurrent sessions) is used up."""


class KaggleRateLimitError(KaggleError):
    """Kaggle kept answering HTTP 429 after every retry."""


class KaggleUnavailableError(KaggleError):
    """Kaggle could not be reached (connection errors or 5xx after every retry)."""


