"""Credentials for a host: the ``Authorization`` header and the secrets to scrub.

:func:`credentials` turns base URLs and an API key into the header to send and the
strings no message may show; :func:`bearer` makes a bearer header. Both are
re-exported by :mod:`backends.transport`, which sends them.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from pydantic import SecretStr
from yarl import URL

from backends.scrubbing import MIN_SECRET_CHARS, secret_values


def bearer(api_key: SecretStr | str) -> SecretStr:
    """The ``Authorization`` header value for an API key."""
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    return SecretStr(f"Bearer {key}")


def credentials(
    urls: Sequence[URL], api_key: SecretStr | str | None
) -> tuple[list[URL], SecretStr | None, tuple[SecretStr, ...]]:
    """The URLs to use, the ``Authorization`` header and the secrets to scrub.

    Credentials in a URL (``http://user:password@host/v1``) become HTTP basic auth and
    are taken out of the URL; otherwise ``api_key`` becomes a bearer token. Every value
    of the URLs' query strings (``?api-key=...``) is a secret too.

    Raises:
        ValueError: Credentials in a URL together with an API key or several URLs.
    """
    secrets: list[str] = []
    authorization: SecretStr | None = None
    with_user = [url for url in urls if url.user is not None]
    if with_user:
        if api_key is not None or len(urls) > 1:
            raise ValueError(
                "credentials in base_url need a single base_url and no api_key; "
                "pass api_key (or headers) instead"
            )
        url = with_user[0]
        token = base64.b64encode(f"{url.user}:{url.password or ''}".encode()).decode()
        authorization = SecretStr(f"Basic {token}")
        secrets += [url.password or "", token]
        urls = [url.with_user(None)]
    elif api_key is not None:
        authorization = bearer(api_key)
        secrets.append(authorization.get_secret_value().removeprefix("Bearer "))
    secrets += secret_values(urls=urls)
    # Too short to be a secret, a string is left alone.
    unique = dict.fromkeys(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
    return list(urls), authorization, tuple(SecretStr(s) for s in unique)


__all__ = ["bearer", "credentials"]
