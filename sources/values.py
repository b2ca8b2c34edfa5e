"""Values from outside, made safe once at the boundary: encodable, bounded, secrets redacted.

Whatever a state file, a database column or an HTTP answer holds, ``Cleaner.clean`` returns
data that orjson can always encode and that carries no credential: nothing past this point
(digest, event log, wire) ever sees a value it cannot take.

- containers nested deeper than ``max_depth`` become the string ``"<nested deeper than N levels>"``;
- integers outside the 64-bit range become their digits as a string (or a size marker when huge);
- NaN and infinities become ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
- bytes (a BLOB column) become ``"<binary: N bytes>"``; strings with lone surrogates are repaired;
- non-string keys become strings; other objects become their ``str()``, cut to 200 characters;
- the value of every key that names a credential becomes ``"[redacted]"``, at any depth.

Plain readers of numbers (``as_int``, ``as_float``) live here too, so that a ``"²"`` or a
5,000-digit string where a number belongs is "no number", never an exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
DEFAULT_SECRET_KEYS = (
    "token",
    "secret",
    "password",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credential",
)
MAX_DEPTH = 64
_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1
_SAFE_INT_BITS = 14_000  # str() of an int refuses past ~4,300 digits (sys.int_max_str_digits)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,18}")
_KEY_CACHE_MAX = 4096


def _words(key: str) -> tuple[str, ...]:
    """Split a key into lowercase words: ``GITHUB_TOKEN``, ``apiKey``, ``x-api-key``."""
    spaced = _CAMEL.sub(lambda m: f"{m[1] or m[3]}_{m[2] or m[4]}", key)
    return tuple(w for w in _NOT_WORD.split(spaced.lower()) if w)


class Cleaner:
    """Make values encodable and redact credentials; one per configuration (it caches key verdicts).

    A key names a credential when its last words are one of ``secret_keys`` (split the same
    way), e.g. ``github_token``, ``apiKey``, ``DB_PASSWORD``, ``Authorization``. A plural
    (``credentials``, ``cookies``) counts too, except for a number: ``total_tokens`` and
    ``max_tokens`` are counts, not credentials. ``None`` and booleans are never redacted (they
    reveal nothing).
    """

    def __init__(self, secret_keys: Iterable[str] = DEFAULT_SECRET_KEYS, *, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self._patterns = [w for w in (_words(k) for k in secret_keys) if w]
        self.rule = "redact-v1:" + ",".join(sorted("_".join(p) for p in self._patterns))
        """Names the redaction rule: data cleaned under another rule may need cleaning again."""
        self._verdicts: dict[str, int] = {}  # key -> 0 plain, 1 secret, 2 secret unless a number

    def clean(self, value: Any) -> Any:
        """Return ``value`` as data orjson can always encode, with credentials redacted."""
        return self._clean(value, 0)

    def _clean(self, value: Any, depth: int) -> Any:
        if value is None or value is True or value is False or type(value) is str and value.isascii():
            return value
        if isinstance(value, dict):
            if depth >= self.max_depth:
                return f"<nested deeper than {self.max_depth} levels>"
            out = {}
            for key, item in value.items():
                name = key if type(key) is str else str(self._clean(key, depth + 1))
                verdict = self._verdict(name)
                if verdict and item is not None and not isinstance(item, bool):
                    if verdict == 1 or not isinstance(item, int | float):
                        out[_text(name)] = REDACTED
                        continue
                out[_text(name)] = self._clean(item, depth + 1)
            return out
        if isinstance(value, list | tuple):
            if depth >= self.max_depth:
                return f"<nested deeper than {self.max_depth} levels>"
            return [self._clean(item, depth + 1) for item in value]
        if isinstance(value, str):
            return _text(value)
        if isinstance(value, int):
            return value if _I64_MIN <= value <= _U64_MAX else _big_int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<binary: {len(value)} bytes>"
        return _text(str(value)[:200])

    def _verdict(self, key: str) -> int:
        verdict = self._verdicts.get(key)
        if verdict is None:
            words = _words(key)
            verdict = 0
            for pattern in self._patterns:
                n = len(pattern)
                if words[-n:] == pattern:
                    verdict = 1
                    break
                if len(words) >= n and words[-n:-1] == pattern[:-1] and words[-1] == pattern[-1] + "s":
                    verdict = 2
            if len(self._verdicts) >= _KEY_CACHE_MAX:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict


def _text(value: str) -> str:
    """Return ``value`` with lone surrogates (which UTF-8 cannot carry) replaced."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _big_int(value: int) -> str:
    if abs(value).bit_length() > _SAFE_INT_BITS:
        return f"<integer of about {int(abs(value).bit_length() * 0.30103)} digits>"
    return str(value)


def as_int(value: Any) -> int | None:
    """Return ``value`` as a 64-bit integer if it is one (an int, a whole float, a short digit string), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if _I64_MIN <= value <= _U64_MAX else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() and abs(value) < 2**63 else None
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def as_float(value: Any) -> float | None:
    """Return ``value`` as a finite float if it is a number (or a short numeric string), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return float(value) if _I64_MIN <= value <= _U64_MAX else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 64 and value.strip().isascii():
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None
