#!/usr/bin/env python3
"""moto's server on 127.0.0.1, on a port the kernel picks, announcing itself when it listens.

usage: moto_server.py READY_PATH

It serves exactly the app `moto_server` serves (moto.server.main), but binds port 0 and, once the
socket is listening, writes "PORT\\n" to READY_PATH (a FIFO or a file). That is a real readiness
signal with no port race: nothing has to poll the server or guess a free port beforehand.
SIGTERM and SIGINT stop it with exit status 0.
"""

import os
import signal
import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: moto_server.py READY_PATH")
    ready_path = sys.argv[1]

    app = DomainDispatcherApplication(create_backend_app)
    # make_server binds and listens before it returns.
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
    )
    # moto builds some URLs from MOTO_PORT, as moto_server sets it.
    os.environ["MOTO_PORT"] = str(server.port)

    def stop(_signum, _frame):
        # serve_forever() returns once the current request is done; exit from the main thread.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    with open(ready_path, "w", encoding="ascii") as ready:
        ready.write(f"{server.port}\n")
    print(f"moto {_moto_version()} listening on http://127.0.0.1:{server.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


if __name__ == "__main__":
    main()
