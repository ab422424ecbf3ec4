"""The data process's DynamoDB writes: item sizes checked once and conditions parsed once, with moto's answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb import comparisons, responses
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models.dynamo_type import Item

from batch_agent.local.moto_patches import cache_condition_parses, size_items_once


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="jobs", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        )
        yield dynamodb


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patches, undone after the test (moto is shared by every test of this process)."""
    monkeypatch.setattr(Item, "__init__", Item.__init__)
    for module in (comparisons, dynamodb_models, responses):
        monkeypatch.setattr(module, "create_condition_expression_parser", module.create_condition_expression_parser)
    size_items_once()
    cache_condition_parses()


def _outcomes(dynamodb: Any) -> list[str]:
    """What moto answers to items around the 400 KB limit, spread over many attributes or in one."""
    answers = []
    for total in (300_000, 404_000, 404_990, 405_010, 406_000, 500_000):
        for parts in (1, 40):
            item = {"k": {"S": f"{total}-{parts}"}}
            room = total - len("k") - len(f"{total}-{parts}")
            for i in range(parts):
                name = f"a{i:02d}"
                item[name] = {"S": "x" * (room // parts - len(name))}
            try:
                dynamodb.put_item(TableName="jobs", Item=item)
                answers.append("stored")
            except ClientError as exc:
                answers.append(exc.response["Error"]["Message"])
    return answers


def test_items_around_the_size_limit_get_the_answers_moto_gives(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _outcomes(table)
    assert "stored" in before and len(set(before)) == 2  # some stored, some refused with moto's message
    table.delete_table(TableName="jobs")
    table.create_table(
        TableName="jobs", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
    )
    monkeypatch.setattr(Item, "__init__", Item.__init__)
    size_items_once()
    assert _outcomes(table) == before


def test_a_condition_parsed_once_is_evaluated_with_each_request_s_values(table: Any, patched: None) -> None:
    table.put_item(TableName="jobs", Item={"k": {"S": "j"}, "s": {"S": "QUEUED"}},
                   ConditionExpression="attribute_not_exists(k)")
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        table.put_item(TableName="jobs", Item={"k": {"S": "j"}, "s": {"S": "other"}},
                       ConditionExpression="attribute_not_exists(k)")

    def move(to: str, expected: str) -> None:
        table.update_item(
            TableName="jobs", Key={"k": {"S": "j"}}, UpdateExpression="SET #s = :to",
            ConditionExpression="#s = :from", ExpressionAttributeNames={"#s": "s"},
            ExpressionAttributeValues={":to": {"S": to}, ":from": {"S": expected}},
        )

    move("RUNNING", "QUEUED")
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        move("SUCCEEDED", "QUEUED")  # same expression, a value that no longer holds
    move("SUCCEEDED", "RUNNING")
    item = table.get_item(TableName="jobs", Key={"k": {"S": "j"}})["Item"]
    assert item["s"] == {"S": "SUCCEEDED"}
    info = comparisons.create_condition_expression_parser.cache_info()  # type: ignore[attr-defined]
    assert info.hits >= 4  # validated then evaluated: each write's second parse, and the repeated put's



def _refusal(dynamodb: Any) -> str:
    try:
        dynamodb.put_item(TableName="jobs", Item={"k": {"S": "bad"}}, ConditionExpression="attribute_not_exists(")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "stored"


def test_a_condition_that_does_not_parse_fails_as_it_does_in_moto(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _refusal(table)
    for module in (comparisons, dynamodb_models, responses):
        monkeypatch.setattr(module, "create_condition_expression_parser", module.create_condition_expression_parser)
    cache_condition_parses()
    assert before != "stored"
    assert _refusal(table) == before == _refusal(table)


def _torn_reads(dynamodb: Any, updates: int) -> int:
    """Reads, during ``updates`` updates that each set two attributes to one value, that saw the two differ."""
    import sys
    import threading

    dynamodb.put_item(TableName="jobs", Item={"k": {"S": "j"}, "status": {"S": "0"}, "message": {"S": "0"}})
    done = threading.Event()
    torn = 0

    def read() -> None:
        nonlocal torn
        while not done.is_set():
            item = dynamodb.get_item(TableName="jobs", Key={"k": {"S": "j"}})["Item"]
            torn += item["status"] != item["message"]

    reader = threading.Thread(target=read)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: interleavings a loaded server sees
    try:
        reader.start()
        for n in range(1, updates + 1):
            dynamodb.update_item(
                TableName="jobs", Key={"k": {"S": "j"}}, UpdateExpression="SET #s = :v, #m = :v",
                ExpressionAttributeNames={"#s": "status", "#m": "message"},
                ExpressionAttributeValues={":v": {"S": str(n)}},
            )
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(interval)
    return torn


def test_a_read_never_sees_half_of_an_update(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from batch_agent.local.moto_patches import serialize_dynamodb_requests

    monkeypatch.setattr(responses.DynamoHandler, "call_action", responses.DynamoHandler.call_action)
    serialize_dynamodb_requests()
    assert _torn_reads(table, 600) == 0  # unpatched moto: 6-7 torn reads per 1,000 updates here
