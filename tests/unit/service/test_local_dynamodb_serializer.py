"""The data process's DynamoDB responses: items copied as moto holds them serialize exactly as moto's own path does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.core.serialize import BaseJSONSerializer, XFormedAttributePicker, get_serializer_class
from moto.core.utils import get_service_model

from batch_agent.local.moto_patches import attribute_values_as_held, is_wire_attribute_value

PLAIN_ITEM: dict[str, Any] = {
    "job_id": {"S": "0f3c"},
    "empty": {"S": ""},
    "text": {"S": "naïve — ✓"},
    "time_limit": {"N": "3600"},
    "cv_score": {"N": "0.9906760872718231"},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "tags": {"SS": ["a", "b"]},
    "sizes": {"NS": ["1", "2.5"]},
    "llm_usage": {"M": {"cost_usd": {"N": "0.01"}, "fallback": {"NULL": True}, "calls": {"L": [{"S": "plan"}]}}},
    "attempts": {"L": [{"M": {"number": {"N": "1"}, "ok": {"BOOL": True}, "reason": {"NULL": True}}}, {"L": []}]},
}


def _body(operation: str, result: dict[str, Any], service: str = "dynamodb") -> Any:
    model = get_service_model(service).operation_model(operation)
    serializer = get_serializer_class(service, "json")(
        operation_model=model, pretty_print=False, value_picker=XFormedAttributePicker(response_transformers=None)
    )
    return json.loads(serializer.serialize(result)["body"])


def _both(monkeypatch: pytest.MonkeyPatch, operation: str, result: dict[str, Any], service: str = "dynamodb") -> Any:
    original = _body(operation, result, service)
    monkeypatch.setattr(
        BaseJSONSerializer, "_serialize_type_structure",
        attribute_values_as_held(BaseJSONSerializer._serialize_type_structure),
    )
    return original, _body(operation, result, service)


def test_a_jobs_item_is_held_in_wire_form_so_the_shortcut_applies() -> None:
    assert all(is_wire_attribute_value(value) for value in PLAIN_ITEM.values())


def test_get_item_serializes_the_same_with_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    original, shortcut = _both(monkeypatch, "GetItem", {"Item": PLAIN_ITEM})
    assert shortcut == original == {"Item": PLAIN_ITEM}


def test_stream_records_serialize_the_same_with_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    record = {
        "eventID": "1",
        "eventName": "INSERT",
        "dynamodb": {"Keys": {"job_id": {"S": "0f3c"}}, "NewImage": PLAIN_ITEM, "SequenceNumber": "11",
                     "SizeBytes": 10, "StreamViewType": "NEW_IMAGE"},
    }
    original, shortcut = _both(monkeypatch, "GetRecords", {"Records": [record]}, service="dynamodbstreams")
    assert shortcut == original
    assert shortcut["Records"][0]["dynamodb"]["NewImage"] == PLAIN_ITEM


@pytest.mark.parametrize(
    "value",
    [
        {"B": b"\x00\xff"},
        {"BS": [b"\x01"]},
        {"M": {"blob": {"B": b"\x02"}}},
        {"L": [{"S": "x"}, {"B": b"\x03"}]},
        {"N": 3},
        {"S": "x", "N": "1"},
    ],
    ids=["binary", "binary-set", "nested-binary", "binary-in-list", "number-not-string", "two-types"],
)
def test_values_not_in_wire_form_take_motos_own_path(monkeypatch: pytest.MonkeyPatch, value: dict[str, Any]) -> None:
    assert not is_wire_attribute_value(value)
    original, shortcut = _both(monkeypatch, "GetItem", {"Item": {"job_id": {"S": "0f3c"}, "v": value}})
    assert shortcut == original
