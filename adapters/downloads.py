"""Downloading members' files from the platform's own file hosts, for the adapters (the core never
downloads): the host checked against an allow-list before any request, no redirects followed, a timeout,
and the size limit enforced while the bytes stream in (never after). A refused or failed download becomes
an ``Attachment`` with ``problem`` set: the member is told why, the message is still answered."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp

from bot.types import Attachment
from config.settings import AttachmentSettings

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


def hosts_of(defaults: Iterable[str], *base_urls: str) -> frozenset[str]:
    """The platform's file hosts and the hosts of its configured base URLs (local stand-ins in tests)."""
    return frozenset({*defaults, *(urlsplit(u).hostname or "" for u in base_urls)} - {""})


def for_platform(limits: AttachmentSettings, file_hosts: Iterable[str], base_url: str) -> Downloads:
    """Downloads from the platform's file hosts and from the host of its configured base URL (over plain
    HTTP only when that base URL itself is plain HTTP, as a local stand-in is)."""
    local = hosts_of((), base_url) if urlsplit(base_url).scheme == "http" else frozenset()
    return Downloads(limits, hosts_of(file_hosts, base_url), local_hosts=local)


class Downloads:
    """Fetches files of one platform from the hosts it allows."""

    def __init__(self, limits: AttachmentSettings, hosts: frozenset[str], *,
                 local_hosts: frozenset[str] = frozenset()) -> None:
        self.limits = limits
        self.hosts = hosts
        #: Hosts that may be reached over plain HTTP (the configured base URL's, when it is a local stand-in).
        self.local_hosts = local_hosts

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in self.hosts:
            return False
        return parts.scheme == "https" or (parts.scheme == "http" and host in self.local_hosts)

    async def fetch_all(self, wanted: list[tuple[str, str, int, str, str | None]],
                        headers: dict[str, str] | None = None) -> tuple[Attachment, ...]:
        """``wanted``: (name, claimed media type, claimed size, download URL, link for moderators)."""
        if not wanted:
            return ()
        timeout = aiohttp.ClientTimeout(total=self.limits.download_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return tuple([await self._fetch(session, *w, headers=headers) for w in wanted])

    async def _fetch(self, session: aiohttp.ClientSession, name: str, media_type: str, size: int, url: str,
                     link: str | None, *, headers: dict[str, str] | None) -> Attachment:
        limit = self.limits.max_download_bytes
        refused = Attachment(name, media_type, size, link)
        if size > limit:
            return _problem(refused, f"it is larger than {limit // (1024 * 1024)} MB")
        if not self.allowed(url):
            log.warning("a file from a host that is not the platform's was not downloaded")
            return _problem(refused, "it is not on the platform's file host")
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status != 200:
                    log.warning("a file download answered HTTP %s", response.status)
                    return _problem(refused, "it could not be downloaded")
                data = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK):
                    data += chunk
                    if len(data) > limit:  # refused while it streams: the rest is never read
                        log.info("a download passed %d bytes and was stopped", limit)
                        return _problem(refused, f"it is larger than {limit // (1024 * 1024)} MB")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("a file download failed (%s)", type(exc).__name__)
            return _problem(refused, "it could not be downloaded")
        return Attachment(name, media_type, len(data), link, bytes(data))


def _problem(file: Attachment, why: str) -> Attachment:
    return Attachment(file.name, file.media_type, file.size, file.link, problem=why)
