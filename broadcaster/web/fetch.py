"""The aiohttp implementation of ``sources.http.Fetch``: one session, bounded answers."""

from __future__ import annotations

import os

import aiohttp

from sources.http import Reply

MAX_BODY = 4 * 1024 * 1024  # bytes; a status endpoint or OpenAPI document is far smaller


class HttpFetch:
    """GET with a total timeout; network trouble becomes ``Reply(error=...)``, never an exception."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def __call__(self, url: str, *, timeout: float) -> Reply:
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                # content.read(n) returns what has arrived so far, not n bytes: read to the end,
                # stopping as soon as the answer passes the cap.
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_BODY:
                        return Reply(error=f"{url}: answer larger than {MAX_BODY // (1024 * 1024)} MiB")
                    chunks.append(chunk)
                return Reply(response.status, b"".join(chunks))
        except TimeoutError:
            return Reply(error=f"{url}: no answer within {timeout:g}s")
        except aiohttp.ClientConnectorError as exc:
            errno = exc.os_error.errno
            return Reply(error=f"{url}: {os.strerror(errno) if errno else exc.os_error}")
        except (aiohttp.ClientError, ValueError) as exc:
            return Reply(error=f"{url}: {exc}")
