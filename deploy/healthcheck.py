"""Container health check: is the daemon's /healthz answering 200?

Docker runs this from the image's HEALTHCHECK.  It reads the address the
daemon was told to serve on (``AGGREGATOR_HTTP``, as ``aggregator run`` does)
instead of a fixed port, so changing the port in ``docker run -e`` or compose
does not leave a check that fails forever.  Standard library only: it runs in
the slim image beside the daemon and must start fast.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

#: Addresses a server binds to that a client cannot connect to as written.
_WILDCARDS = {"", "0.0.0.0", "::", "[::]", "*"}


def target(http: str) -> str:
    """The /healthz URL for an ``AGGREGATOR_HTTP`` value such as ``0.0.0.0:8080``."""
    host, sep, port = http.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"AGGREGATOR_HTTP={http!r} is not HOST:PORT")
    if host in _WILDCARDS:
        host = "127.0.0.1"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    http = os.environ.get("AGGREGATOR_HTTP", "")
    if not http:
        print("AGGREGATOR_HTTP is not set: the daemon serves no /healthz", file=sys.stderr)
        return 1
    url = target(http)
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code} {exc.reason}", file=sys.stderr)
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
