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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
