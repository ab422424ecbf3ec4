"""DynamoDB and S3 of the local stack in a process of their own: ``python -m batch_agent.local.data_server PORT``.

The API's requests (a PutItem per job, a GetItem per poll) then never wait for the
GIL of the process that emulates Step Functions, Lambda and Batch. Runs until SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    from batch_agent.local.moto_patches import install_data_patches
    from batch_agent.local.moto_server import KeepAliveMotoServer

    host, port = (argv or sys.argv[1:])[:2]
    # One log line per emulated call costs CPU under load.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    install_data_patches()
    server = KeepAliveMotoServer(ip_address=host, port=int(port))
    server.start()
    try:
        _warm(host, int(port))
    except Exception as exc:  # a slower first call is all a failed warm-up costs
        print(f"warm-up failed: {exc}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    server.stop()
    return 0


def _warm(host: str, port: int) -> None:
    """One call of each item operation on a scratch table, as the process starts.

    moto prepares an operation on its first call (~70 ms), and a burst of first calls
    each does it: 50 concurrent first POST /run took up to ~440 ms without this and
    ~300 ms with it on a quiet machine. DynamoDB has no such first-call cost to emulate.
    """
    import boto3

    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="warm-up",
        aws_secret_access_key="warm-up",
    )
    table = "local-stack-warm-up"
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
    )
    key = {"k": {"S": "k"}}
    dynamodb.put_item(
        TableName=table, Item={**key, "s": {"S": "queued"}}, ConditionExpression="attribute_not_exists(k)"
    )
    dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #s = :r",
        ConditionExpression="attribute_exists(k) AND #s IN (:q)",
        ExpressionAttributeNames={"#s": "s"},
        ExpressionAttributeValues={":r": {"S": "running"}, ":q": {"S": "queued"}},
    )
    dynamodb.delete_table(TableName=table)


if __name__ == "__main__":
    sys.exit(main())
