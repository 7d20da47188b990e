"""Stigmer agent-runner: the HTTP service the stigmer CLI runs as a container.

Kept import-light on purpose: ``python -m stigmer_agent_runner.healthcheck``
imports this package and must stay stdlib-only and fast.
"""

__version__ = "0.1.0"
