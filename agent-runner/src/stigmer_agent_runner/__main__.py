"""``python -m stigmer_agent_runner``: run the server."""

from stigmer_agent_runner.server import main

if __name__ == "__main__":
    raise SystemExit(main())
