"""Container health probe: ``python -m stigmer_agent_runner.healthcheck``.

Standard library only (the image has no curl). GETs
``http://127.0.0.1:$STIGMER_AGENT_RUNNER_PORT/healthz`` with a 5 s timeout and
exits 0 on HTTP 200, else 1. Proxy variables are ignored.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = 7235
TIMEOUT_SECONDS = 5.0


def probe(port: int, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/healthz"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
        return False, f"{url}: {exc}"
    if status == 200:
        return True, f"{url}: HTTP 200"
    return False, f"{url}: HTTP {status}"


def main() -> int:
    raw = os.environ.get("STIGMER_AGENT_RUNNER_PORT", "").strip() or str(DEFAULT_PORT)
    try:
        port = int(raw)
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        print(f"healthcheck: invalid STIGMER_AGENT_RUNNER_PORT {raw!r}", file=sys.stderr)
        return 1
    ok, detail = probe(port)
    if not ok:
        print(f"healthcheck: unhealthy: {detail}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
