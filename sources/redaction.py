"""What counts as a credential: by the name of its key, and by the look of a value.

Key names: a key names a credential when its last words are one of the secret keys (split the
same way: ``GITHUB_TOKEN``, ``apiKey``, ``x-api-key``, ``aws_secret_access_key``). Digits on a
word (``TOKEN2``) and a trailing word that only says how the secret is written (``tokenValue``,
``secret_key_base``, ``password_hash``) do not hide it. A plural (``credentials``, ``cookies``)
counts too, except for a number: ``total_tokens`` and ``max_tokens`` are counts.

Values: a text that *looks* like a credential (a GitHub token, an OpenAI or Anthropic key, an
AWS access key id, a Slack token, a JWT, a PEM private key, the password in a URL) is replaced
wherever it appears, also inside a longer text such as an error message. A pattern with a group
named ``secret`` replaces that group only (``https://user:[redacted]@host``); else the whole
match. Values under an id key (``adw_id``, ``ids``) are left exact: an id is never a secret.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
DEFAULT_SECRET_KEYS = (
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "pat",
    "api_key",
    "apikey",
    "access_key",
    "secret_key",
    "private_key",
    "ssh_key",
    "signing_key",
    "encryption_key",
    "master_key",
    "openai_key",
    "anthropic_key",
    "authorization",
    "auth",
    "bearer",
    "jwt",
    "cookie",
    "session_id",
    "sessionid",
    "credential",
    "creds",
    "dsn",
    "database_url",
    "connection_string",
)
_AWS = ("AKIA", "ASIA", "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "AIPA")
# Each default pattern with the texts one of which a match must contain: a value holding none of
# them is not searched. One search for all the hints at once decides for most texts.
_DEFAULTS = {
    r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{30,255})": (
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
    ),
    # OpenAI and Anthropic keys are long and random: a digit and a capital letter, unlike a slug.
    r"\bsk-(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{20,}": ("sk-",),
    rf"\b(?:{'|'.join(_AWS)})[A-Z0-9]{{16}}\b": _AWS,
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}": ("xox",),
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*": ("eyJ",),
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|$)": ("PRIVATE KEY",),
    r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\[\]]*:(?P<secret>[^\s/?#@]+)@": ("://",),
}
DEFAULT_SECRET_PATTERNS = tuple(_DEFAULTS)
# Words after a secret word that say how it is written, not what it is: the key is still a secret.
_FORM_WORDS = frozenset(
    {"value", "val", "str", "string", "text", "raw", "b64", "base64", "hex", "data", "hash", "base"}
)
_ID_WORDS = frozenset({"id", "ids", "uuid"})
_CAMEL = re.compile(r"([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_KEY_CACHE_MAX = 4096

PLAIN, SECRET, SECRET_UNLESS_NUMBER, EXACT = 0, 1, 2, 3
"""Verdicts on a key: its value is plain, a secret, a secret unless it is a number, or an id (kept exact)."""


def words(key: str) -> tuple[str, ...]:
    """Split a key into lowercase words: ``GITHUB_TOKEN``, ``apiKey``, ``x-api-key``."""
    spaced = _CAMEL.sub(lambda m: f"{m[1] or m[3]}_{m[2] or m[4]}", key)
    return tuple(w for w in _NOT_WORD.split(spaced.lower()) if w)


def compile_patterns(patterns: Iterable[str]) -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
    """Return each pattern compiled, with its hints (empty: always searched); ``re.error`` names a bad one."""
    return [(re.compile(p), _DEFAULTS.get(p, ())) for p in patterns]


class Redactor:
    """Decide which keys name credentials and replace credential-looking text in values."""

    def __init__(self, keys: Iterable[str], patterns: Iterable[str]) -> None:
        self._keys = [w for w in (words(k) for k in keys) if w]
        patterns = tuple(patterns)
        self._values = compile_patterns(patterns)
        hints = sorted({hint for _, some in self._values for hint in some})
        self._any_hint = re.compile("|".join(map(re.escape, hints))) if hints else None
        digest = hashlib.sha256("\n".join(patterns).encode()).hexdigest()[:16]
        self.rule = "redact-v2:" + ",".join(sorted("_".join(p) for p in self._keys)) + ":" + digest
        """Names the rule: data cleaned under another rule may need cleaning again."""
        self._verdicts: dict[str, int] = {}

    def text(self, value: str) -> str:
        """Return ``value`` with every credential-looking part replaced by ``[redacted]``."""
        hinted = self._any_hint is not None and self._any_hint.search(value) is not None
        for pattern, hints in self._values:
            if hints and not (hinted and any(hint in value for hint in hints)):
                continue
            if pattern.search(value):
                value = pattern.sub(_replace, value)
        return value

    def verdict(self, key: str) -> int:
        """Return ``PLAIN``, ``SECRET``, ``SECRET_UNLESS_NUMBER`` or ``EXACT`` for a key."""
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._judge(words(key))
            if len(self._verdicts) >= _KEY_CACHE_MAX:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _judge(self, said: tuple[str, ...]) -> int:
        bare = tuple(w.rstrip("0123456789") or w for w in said)  # TOKEN2 is a token
        candidates = [bare]
        if len(bare) > 1 and bare[-1] in _FORM_WORDS:
            candidates.append(bare[:-1])  # tokenValue, secret_key_base
        verdict = PLAIN
        for form in candidates:
            for pattern in self._keys:
                n = len(pattern)
                if form[-n:] == pattern:
                    return SECRET
                if len(form) >= n and form[-n:-1] == pattern[:-1] and form[-1] == pattern[-1] + "s":
                    verdict = SECRET_UNLESS_NUMBER
        if verdict == PLAIN and said and said[-1] in _ID_WORDS:
            return EXACT
        return verdict


def _replace(match: re.Match[str]) -> str:
    if "secret" not in match.re.groupindex:
        return REDACTED
    start, end = match.span("secret")
    if start < 0:
        return REDACTED
    return match[0][: start - match.start()] + REDACTED + match[0][end - match.start() :]
