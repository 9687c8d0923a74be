"""Secrets kept out of everything Verdict shows: messages, logs, HTTP answers, stderr.

What is masked (replaced by `***`):

* the user-info of any URL (`http://user:password@host` → `http://user:***@host`; a lone
  `http://token@host` → `http://***@host`);
* the value of token-like query parameters (`?access_token=…`, `&api_key=…`, …);
* the value after a credential header name (`Authorization: Bearer …`, `'X-Api-Key': '…'`), and
  the values of credential-named keys in logged mappings;
* any string given as a known secret (the bearer token of the API, the values of credential
  headers from the analysis files), wherever it appears.

`Redactor` is a small immutable value; build one at the program's edge from the configuration
(`Redactor.of(specs, token)`) and pass it to the logs, the HTTP app and the CLI's error output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MASK = "***"

_CREDENTIAL_NAMES = (
    r"proxy-authorization|authorization|x-api-key|api[-_]?key|apikey|x-auth-token|auth[-_]?token|"
    r"access[-_]?token|private-token|x-vault-token|set-cookie|cookie|password|passwd|secret|token"
)
_CREDENTIAL_NAME = re.compile(rf"^(?:{_CREDENTIAL_NAMES})$", re.IGNORECASE)
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>@]*(?:@[^/?#\s'\"<>@]*)*)@"
)
_QUERY_SECRET = re.compile(
    rf"(?P<key>[?&;](?:{_CREDENTIAL_NAMES}|key|sig|signature)=)[^&#;\s'\"<>]*", re.IGNORECASE
)
_HEADER_SECRET = re.compile(
    rf"(?P<name>\b(?:{_CREDENTIAL_NAMES}))(?P<sep>['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<scheme>(?:bearer|basic|token|digest)\s+)?(?P<value>[^\s'\",;}&]+)",
    re.IGNORECASE,
)


def is_credential_name(name: str) -> bool:
    """Whether a header or key of this name holds a secret (Authorization, X-Api-Key, token…)."""
    return bool(_CREDENTIAL_NAME.match(name.strip()))


def _userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match.group("userinfo").partition(":")
    masked = f"{user}:{MASK}" if sep and user else MASK
    return f"{match.group('scheme')}{masked}@"


def _header(match: re.Match[str]) -> str:
    if match.group("value") == MASK:
        return match.group(0)
    return f"{match.group('name')}{match.group('sep')}{match.group('scheme') or ''}{MASK}"


@dataclass(frozen=True)
class Redactor:
    """Masks secrets in text and in nested JSON-like values (see the module docstring)."""

    secrets: tuple[str, ...] = ()
    """Exact strings to mask wherever they appear (longest first; 4 characters or more)."""

    @classmethod
    def with_secrets(cls, secrets: Iterable[str | None]) -> Redactor:
        kept = {s for s in secrets if s and len(s) >= 4}
        return cls(tuple(sorted(kept, key=lambda s: (-len(s), s))))

    @classmethod
    def of(cls, headers: Iterable[Mapping[str, str]], *extra: str | None) -> Redactor:
        """Secrets from header mappings (credential-named headers only) plus `extra` ones."""
        found: list[str | None] = list(extra)
        for mapping in headers:
            for name, value in mapping.items():
                if is_credential_name(name):
                    found.append(value)
                    scheme, _, rest = value.partition(" ")
                    if rest and scheme.lower() in ("bearer", "basic", "token", "digest"):
                        found.append(rest.strip())
        return cls.with_secrets(found)

    def text(self, value: str) -> str:
        """`value` with every secret masked."""
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        if "://" in value:
            value = _URL_USERINFO.sub(_userinfo, value)
        if "=" in value:
            value = _QUERY_SECRET.sub(lambda m: f"{m.group('key')}{MASK}", value)
        return _HEADER_SECRET.sub(_header, value)

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value (dicts, lists, strings…) with every secret masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                (self.text(key) if isinstance(key, str) else key): (
                    MASK
                    if isinstance(key, str) and is_credential_name(key) and item
                    else self.value(item)
                )
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value


def redact(text: str) -> str:
    """`text` with URL user-info, token query values and credential header values masked."""
    return Redactor().text(text)
