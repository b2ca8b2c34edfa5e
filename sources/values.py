"""Values from outside, made safe once at the boundary: encodable, bounded, secrets redacted.

Whatever a state file, a database column or an HTTP answer holds, ``Cleaner.clean`` returns
data that orjson can always encode and that carries no credential: nothing past this point
(digest, event log, wire) ever sees a value it cannot take.

- containers nested deeper than ``max_depth`` become the string ``"<nested deeper than N levels>"``;
- integers outside the 64-bit range become their digits as a string (or a size marker when huge);
- NaN and infinities become ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
- bytes (a BLOB column) become ``"<binary: N bytes>"``; strings with lone surrogates are repaired;
- non-string keys become strings; other objects become their ``str()``, cut to 200 characters;
- the value of every key that names a credential becomes ``"[redacted]"``, at any depth, and
  every credential-looking part of a text is replaced in place (``redaction``).

Plain readers of numbers (``as_int``, ``as_float``) live here too, so that a ``"²"`` or a
5,000-digit string where a number belongs is "no number", never an exception.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable
from typing import Any

from .redaction import DEFAULT_SECRET_KEYS, DEFAULT_SECRET_PATTERNS, EXACT, REDACTED, SECRET, Redactor

__all__ = ["DEFAULT_SECRET_KEYS", "DEFAULT_SECRET_PATTERNS", "REDACTED", "Cleaner", "as_float", "as_int"]

MAX_DEPTH = 64
_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1
_SAFE_INT_BITS = 14_000  # str() of an int refuses past ~4,300 digits (sys.int_max_str_digits)
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,18}")


class Cleaner:
    """Make values encodable and redact credentials; one per configuration (it caches key verdicts).

    Which keys and texts are credentials is ``redaction.Redactor``'s to say: ``github_token``,
    ``apiKey``, ``DB_PASSWORD`` by name (not ``total_tokens``, a count), a ``ghp_...`` token or a
    URL's password by look, except under an id key. ``None`` and booleans are never redacted
    (they reveal nothing).
    """

    def __init__(
        self,
        secret_keys: Iterable[str] = DEFAULT_SECRET_KEYS,
        *,
        patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS,
        max_depth: int = MAX_DEPTH,
        max_text_bytes: int | None = None,
    ) -> None:
        self.max_depth = max_depth
        self.max_text_bytes = max_text_bytes
        self._redactor = Redactor(secret_keys, patterns)
        self.rule = self._redactor.rule
        """Names the redaction rule: data cleaned under another rule may need cleaning again."""

    def bounded(self, max_text_bytes: int) -> Cleaner:
        """Return a cleaner with the same rule that also cuts every text past ``max_text_bytes`` (UTF-8)."""
        other = copy.copy(self)
        other.max_text_bytes = max_text_bytes
        return other

    def clean(self, value: Any) -> Any:
        """Return ``value`` as data orjson can always encode, with credentials redacted."""
        return self._clean(value, 0, False)

    def _clean(self, value: Any, depth: int, exact: bool) -> Any:
        if value is None or value is True or value is False:
            return value
        if type(value) is str:
            text = value if value.isascii() else _text(value)
            if self.max_text_bytes is not None and len(text) * 4 > self.max_text_bytes:
                text = cut(text, self.max_text_bytes)
            return text if exact else self._redactor.text(text)
        if isinstance(value, dict):
            if depth >= self.max_depth:
                return f"<nested deeper than {self.max_depth} levels>"
            out = {}
            verdict_of = self._redactor.verdict
            for key, item in value.items():
                name = key if type(key) is str else str(self._clean(key, depth + 1, True))
                verdict = verdict_of(name)
                if verdict and verdict != EXACT and item is not None and not isinstance(item, bool):
                    if verdict == SECRET or not isinstance(item, int | float):
                        out[_text(name)] = REDACTED
                        continue
                out[_text(name)] = self._clean(item, depth + 1, verdict == EXACT)
            return out
        if isinstance(value, list | tuple):
            if depth >= self.max_depth:
                return f"<nested deeper than {self.max_depth} levels>"
            return [self._clean(item, depth + 1, exact) for item in value]
        if isinstance(value, str):
            return self._clean(str(value), depth, exact)  # a str subclass
        if isinstance(value, int):
            return value if _I64_MIN <= value <= _U64_MAX else _big_int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<binary: {len(value)} bytes>"
        text = _text(str(value)[:200])
        return text if exact else self._redactor.text(text)


def cut(text: str, max_bytes: int) -> str:
    """Return ``text`` cut to ``max_bytes`` of UTF-8 (on a character boundary) with a marker saying how much went."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    kept = data[:max_bytes].decode("utf-8", "ignore")
    return f"{kept}... [cut: {len(data) - len(kept.encode('utf-8')):,} more bytes]"


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
