"""Delivering one notice to one receiver: an HTTP POST of JSON, or an e-mail over SMTP.

Each returns nothing or raises ``DeliveryFailed`` with a one-line reason (kept in the outbox
row, shown by `hub notify list`); the caller retries with backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from hub.notify.model import Receiver, one_line

TIMEOUT_S: Final = 10.0


class DeliveryFailed(Exception):
    """A receiver did not take a notice (it is tried again later)."""


def payload(notice_id: str, kind: str, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a webhook receives: the notice, its id (for the receiver's own de-duplication) and
    the message it came from."""
    return {"notice_id": notice_id, "kind": kind, "subject": subject, "detail": body}


class AddressGuard:
    """Which addresses a webhook may reach: none that is loopback, link-local, unspecified or
    multicast, unless inside a network the operator allows (HUB_NOTIFY_ALLOW_NETWORKS). A
    company's webhook must not make the hub call its own services (Prometheus on 127.0.0.1, a
    cloud's metadata address)."""

    def __init__(self, allowed: tuple[str, ...] = ()) -> None:
        self.allowed = [ipaddress.ip_network(n) for n in allowed]

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be reached, or None."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        kind = next(
            (
                name
                for name, hit in (
                    ("loopback", ip.is_loopback),
                    ("link-local", ip.is_link_local),
                    ("unspecified", ip.is_unspecified),
                    ("multicast", ip.is_multicast),
                )
                if hit
            ),
            None,
        )
        if kind is None or any(ip in network for network in self.allowed):
            return None
        return f"{address} is {kind}: refused (allow it with HUB_NOTIFY_ALLOW_NETWORKS)"


class GuardedResolver(AbstractResolver):
    """The default resolver, keeping only addresses the guard lets through: checked on the
    addresses connected to, so a name that resolves elsewhere later cannot slip by."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        kept = [r for r in found if self.guard.refusal(r["host"]) is None]
        if not kept:
            reason = self.guard.refusal(found[0]["host"]) if found else "no address"
            raise OSError(f"{host}: {reason}")
        return kept

    async def close(self) -> None:
        await self.inner.close()


def session(guard: AddressGuard) -> aiohttp.ClientSession:
    """The notifier's HTTP client: names resolved through the guard."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=GuardedResolver(guard)))


async def webhook(
    session: aiohttp.ClientSession,
    receiver: Receiver,
    document: dict[str, Any],
    guard: AddressGuard | None = None,
) -> None:
    """POST the notice; a redirect is not followed (it would carry the POST to wherever the
    receiver points, the hub's own services included) and counts as a failure."""
    host = urlsplit(receiver.target).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass  # a name: the session's resolver checks what it resolves to
    else:
        refused = (guard or AddressGuard()).refusal(host)
        if refused:
            raise DeliveryFailed(refused)
    try:
        async with session.post(
            receiver.target,
            json=document,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            headers={"user-agent": "testbed-hub-notifier"},
            allow_redirects=False,
        ) as response:
            if response.status >= 300:
                raise DeliveryFailed(f"HTTP {response.status} from {receiver.target}")
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise DeliveryFailed(f"{type(error).__name__}: {error}"[:300]) from None


def message_id(notice_id: str) -> str:
    """A Message-ID (RFC 5322) made of the notice id's digest: the id carries device data
    (an incident's event id may hold anything), a digest is always a valid header."""
    return f"<{hashlib.sha256(notice_id.encode()).hexdigest()[:40]}@testbed-hub>"


def mail(smtp_url: str, receiver: Receiver, document: dict[str, Any]) -> EmailMessage:
    """The e-mail of a notice: its subject on one line (RFC 2047-encoded when not ASCII), the
    notice as JSON in the body (UTF-8)."""
    message = EmailMessage()
    message["From"] = f"Testbed hub <hub@{urlsplit(smtp_url).hostname or 'localhost'}>"
    message["To"] = receiver.target
    message["Subject"] = one_line(str(document["subject"]))
    message["Message-ID"] = message_id(str(document["notice_id"]))
    message.set_content(json.dumps(document, indent=2, default=str, ensure_ascii=False))
    return message


async def email(smtp_url: str, receiver: Receiver, document: dict[str, Any]) -> None:
    if not smtp_url:
        raise DeliveryFailed("no SMTP server: set HUB_SMTP_URL (smtp://host:port)")
    try:
        message = mail(smtp_url, receiver, document)
    except (ValueError, TypeError) as error:  # a header the library refuses, say
        raise DeliveryFailed(f"the message could not be built: {error}"[:300]) from None
    try:
        await asyncio.to_thread(_send_mail, smtp_url, message)
    except (OSError, smtplib.SMTPException) as error:
        raise DeliveryFailed(f"{type(error).__name__}: {error}"[:300]) from None


def _send_mail(smtp_url: str, message: EmailMessage) -> None:
    """smtp://[user:password@]host[:port] (STARTTLS when the server offers it), or smtps://."""
    url = urlsplit(smtp_url)
    host = url.hostname or "localhost"
    if url.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, url.port or 465, timeout=TIMEOUT_S, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(host, url.port or 25, timeout=TIMEOUT_S)
    with client:
        client.ehlo()
        if url.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if url.username:
            client.login(unquote(url.username), unquote(url.password or ""))
        client.send_message(message)
