"""The local stack's moto dispatcher: the same backend per host as moto's own, looked up once per host."""

from __future__ import annotations

from typing import Any

import pytest
from moto import backends
from moto.core import responses
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from batch_agent.local.moto_patches import cache_action_lookup
from batch_agent.local.moto_server import BackendCachingDispatcher

HOSTS = [None, "moto_api", "dynamodb", "dynamodb.us-east-1.amazonaws.com", "s3.amazonaws.com",
         "states.us-east-1.amazonaws.com", "127.0.0.1:5001"]


def test_each_host_gets_the_backend_moto_would_give_it() -> None:
    ours, motos = BackendCachingDispatcher(create_backend_app), DomainDispatcherApplication(create_backend_app)
    for host in HOSTS * 2:
        assert ours.get_backend_for_host(host) == motos.get_backend_for_host(host)


def test_moto_lists_its_folder_once_per_host_not_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    listings = []
    original = backends.list_of_moto_modules

    def counted() -> Any:
        listings.append(1)
        return original()

    monkeypatch.setattr(backends, "list_of_moto_modules", counted)
    dispatcher = BackendCachingDispatcher(create_backend_app)
    for _ in range(50):
        dispatcher.get_backend_for_host("dynamodb.us-east-1.amazonaws.com")
    assert len(listings) == 1


def test_the_action_lookup_is_made_once_per_class_with_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.responses import DynamoHandler

    monkeypatch.setattr(responses, "method_names_from_class", responses.method_names_from_class)
    expected = responses.method_names_from_class(DynamoHandler)
    cache_action_lookup()
    assert responses.method_names_from_class(DynamoHandler) == expected
    assert responses.method_names_from_class(DynamoHandler) is responses.method_names_from_class(DynamoHandler)
