"""orjson when installed (several times faster), else the standard library.

Both produce identical bytes for dumps_sorted, so content hashes do not depend on which one
is present.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; this is the slow fallback
    orjson = None

if orjson is not None:
    JSONDecodeError: type[ValueError] = orjson.JSONDecodeError

    loads = orjson.loads

    def dumps_sorted(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)

else:  # pragma: no cover
    JSONDecodeError = json.JSONDecodeError

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps_sorted(value: Any) -> bytes:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
