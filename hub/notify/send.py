"""Delivering one notice to one receiver: an HTTP POST of JSON, or an e-mail over SMTP.

Each returns nothing or raises ``DeliveryFailed`` with a one-line reason (kept in the outbox
row, shown by `hub notify list`); the caller retries with backoff.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import aiohttp

from hub.notify.model import Receiver

TIMEOUT_S: Final = 10.0


class DeliveryFailed(Exception):
    """A receiver did not take a notice (it is tried again later)."""


def payload(notice_id: str, kind: str, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a webhook receives: the notice, its id (for the receiver's own de-duplication) and
    the message it came from."""
    return {"notice_id": notice_id, "kind": kind, "subject": subject, "detail": body}


async def webhook(
    session: aiohttp.ClientSession, receiver: Receiver, document: dict[str, Any]
) -> None:
    try:
        async with session.post(
            receiver.target,
            json=document,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            headers={"user-agent": "testbed-hub-notifier"},
        ) as response:
            if response.status >= 300:
                raise DeliveryFailed(f"HTTP {response.status} from {receiver.target}")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DeliveryFailed(f"{type(error).__name__}: {error}"[:300]) from None


async def email(smtp_url: str, receiver: Receiver, document: dict[str, Any]) -> None:
    if not smtp_url:
        raise DeliveryFailed("no SMTP server: set HUB_SMTP_URL (smtp://host:port)")
    message = EmailMessage()
    message["From"] = f"Testbed hub <hub@{urlsplit(smtp_url).hostname or 'localhost'}>"
    message["To"] = receiver.target
    message["Subject"] = document["subject"]
    message["Message-ID"] = f"<{document['notice_id'].replace(':', '.')}@testbed-hub>"
    message.set_content(json.dumps(document, indent=2, default=str))
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
