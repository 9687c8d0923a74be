"""Secrets kept out of everything Verdict shows: messages, logs, HTTP answers, stderr.

What is masked (replaced by `***`):

* the user-info of any URL (`http://user:password@host` → `http://user:***@host`; a lone
  `http://token@host` → `http://***@host`; with no scheme, `user:password@host:9090` →
  `user:***@host:9090`); the placeholder `password` of an example URL stays as written;
* the value of token-like query parameters (`?access_token=…`, `&api_key=…`, …);
* the value after a credential header name (`Authorization: Bearer …`, `'X-Api-Key': '…'`), and
  the values of credential-named keys in logged mappings;
* any string given as a known secret (the bearer token of the API, the values of credential
  headers from the analysis files, the passwords of configured URLs from `url_secrets`, which
  the patterns above miss when they hold a space or a quote), wherever it appears, as written
  or escaped in JSON or a Python repr.

Masking keeps the message readable: a credential word in a path (`/etc/verdict/token: No such
file`) or followed by a plain word (`token: missing`) is not a header, and a value stops
before a closing bracket.

`Redactor` is a small immutable value; build one at the program's edge from the configuration
(`Redactor.of(specs, token)`) and pass it to the logs, the HTTP app and the CLI's error output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"

_CREDENTIAL_NAMES = (
    r"proxy-authorization|authorization|x-api-key|api[-_]?key|apikey|x-auth-token|auth[-_]?token|"
    r"access[-_]?token|private-token|x-vault-token|set-cookie|cookie|password|passwd|secret|token"
)
_CREDENTIAL_NAME = re.compile(rf"^(?:{_CREDENTIAL_NAMES})$", re.IGNORECASE)
# a name whose last word is a credential word: X-Signature, X-Hub-Signature-256, X-Gitlab-Token,
# grafana_token (not token_file: a file's name is not a secret)
_CREDENTIAL_WORD = re.compile(
    r"(?:^|[-_])(?:signature|secret|token|password|passwd|api[-_]?key|credentials?)(?:[-_]\d+)?$",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>@]*(?:@[^/?#\s'\"<>@]*)*)@"
)
# user:password@host with no scheme (not after `//`, a word, or a path)
_BARE_USERINFO = re.compile(r"(?<![\w.~%+/:@-])(?P<userinfo>[\w.~%+-]+:[^\s/?#@'\"<>]+)@(?=[\w\[])")
_QUERY_SECRET = re.compile(
    rf"(?P<key>[?&;](?:{_CREDENTIAL_NAMES}|key|sig|signature)=)[^&#;\s'\"<>)\]]*", re.IGNORECASE
)
_HEADER_SECRET = re.compile(
    rf"(?<![/\\.~])(?P<name>\b(?:(?:[\w-]*-)?(?:signature|secret|token)(?:-\d+)?|"
    rf"{_CREDENTIAL_NAMES}))(?P<sep>['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<scheme>(?:bearer|basic|token|digest)\s+)?(?P<value>[^\s'\",;}&)\]>]+)",
    re.IGNORECASE,
)
# what follows a credential word in prose, not a value (`token: missing`, `password: No such`)
_NOT_A_VALUE = frozenset(
    {"no", "not", "none", "null", "missing", "invalid", "expired", "required", "empty", "unset"}
)
# the password of an example URL (`postgresql://user:password@host/db` in a hint)
_PLACEHOLDERS = frozenset({"password", "<password>", MASK})


def is_credential_name(name: str) -> bool:
    """Whether a header or key of this name holds a secret (Authorization, X-Api-Key, token,
    X-Signature, X-Hub-Signature-256, X-Webhook-Secret…)."""
    name = name.strip()
    return bool(_CREDENTIAL_NAME.match(name) or _CREDENTIAL_WORD.search(name))


def url_secrets(url: str | None, *, credential: bool = False) -> list[str]:
    """What to mask of a configured URL: its password, as written and decoded (also for a URL
    with no scheme, `user:password@host:9090`). With `credential` (a URL that is itself a
    secret, as a Slack webhook's): the URL too, and its path and last path segment when they
    are long enough to be a token rather than a word (an echoing server shows the path alone)."""
    if not url:
        return []
    text = url.strip()
    try:
        parts = urlsplit(text if "://" in text else f"//{text}")
        password, path = parts.password, parts.path
    except ValueError:
        password, path = None, ""
    found = [password, unquote(password)] if password and password not in _PLACEHOLDERS else []
    if credential:
        found.append(text)
        if len(path) >= 16 and path.strip("/").count("/") >= 1:
            found.append(path)
        last = path.rstrip("/").rpartition("/")[2]
        if len(last) >= 16:
            found.append(last)
    return found


def _masked_userinfo(userinfo: str) -> str:
    user, sep, password = userinfo.partition(":")
    if sep and password in _PLACEHOLDERS:
        return userinfo
    return f"{user}:{MASK}" if sep and user else MASK


def _userinfo(match: re.Match[str]) -> str:
    return f"{match.group('scheme')}{_masked_userinfo(match.group('userinfo'))}@"


def _header(match: re.Match[str]) -> str:
    value = match.group("value")
    if value == MASK or (not match.group("scheme") and value.lower() in _NOT_A_VALUE):
        return match.group(0)
    return f"{match.group('name')}{match.group('sep')}{match.group('scheme') or ''}{MASK}"


def _escaped(secret: str) -> set[str]:
    """`secret` as written, and as it appears inside a JSON string or a Python repr."""
    return {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}


@dataclass(frozen=True)
class Redactor:
    """Masks secrets in text and in nested JSON-like values (see the module docstring)."""

    secrets: tuple[str, ...] = ()
    """Exact strings to mask wherever they appear (longest first; 4 characters or more)."""

    @classmethod
    def with_secrets(cls, secrets: Iterable[str | None]) -> Redactor:
        kept = {form for s in secrets if s and len(s) >= 4 for form in _escaped(s)}
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
        if "@" in value:
            value = _BARE_USERINFO.sub(lambda m: f"{_masked_userinfo(m.group('userinfo'))}@", value)
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
