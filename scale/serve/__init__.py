"""``scale serve``: loaded programs behind an OpenAI-compatible endpoint (FastAPI).

- ``POST /v1/chat/completions``: the last user message is the problem; the reply's content
  is a short worked solution ending in the boxed answer; ``usage`` is the program's whole
  usage (every call it made); the extra field ``scale`` carries the steps. With
  ``stream: true`` each stage and step is sent as it completes (server-sent events), the
  answer last.
- ``GET /v1/models`` (one entry per program), ``GET /health``.

Limits answer as OpenAI clients expect: a malformed request, or a problem over the size
cap or empty -> 400, a body over ``max_body`` bytes -> 413, a body not sent within
``body_seconds`` -> 408, an unknown model -> 404, a missing or wrong bearer key -> 401
(compared in constant time), every worker busy -> 429 with ``Retry-After``, past the
per-request deadline -> 504; errors are OpenAI-style JSON. A slot is held until its
program has stopped: a client that disconnects, or a request past its deadline, cancels
it: it makes no further model call, and a call in flight to a local model is closed (one
to a remote provider finishes), so ``max_in_flight`` bounds the work at the backend.
``/health`` says "ok" and nothing more; no schema is served. Connections are bounded by
``guarded_protocol`` (``protocol.py``); requests are read by ``request.py``, run by
``app.py``.
"""

from scale.serve.app import DEFAULT_DEADLINE, create_app
from scale.serve.protocol import HEADER_SECONDS, MAX_CONNECTIONS, guarded_protocol
from scale.serve.request import BODY_SECONDS, MAX_BODY_BYTES

__all__ = [
    "BODY_SECONDS",
    "DEFAULT_DEADLINE",
    "HEADER_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_CONNECTIONS",
    "create_app",
    "guarded_protocol",
]
