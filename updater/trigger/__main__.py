"""`python -m updater.trigger`: what updater-trigger@.service runs, once per accepted connection."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping

from updater.files import request_file
from updater.outputs.log import setup as setup_logging
from updater.trigger.rules import request_run, serve, settings_from

log = logging.getLogger("updater")


def main(environ: Mapping[str, str] | None = None) -> int:
    """updater-trigger@.service: stdin is the connection updater-trigger.socket accepted."""
    env = os.environ if environ is None else environ
    setup_logging(verbose=False)
    try:
        sock = socket.socket(fileno=0)
    except OSError:
        log.error("stdin is not a socket: updater-trigger@.service runs this, once per connection")
        return 2
    serve(sock, settings_from(env), lambda: request_run(request_file(env)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
