"""``hub access``: broker users for devices and partners, and API tokens."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from hub.cli.common import Commands
from hub.settings import Settings
from hub.topics import TELEMETRY as TELEMETRY_TOPIC


def add(commands: Commands) -> None:
    access_parser = commands.add_parser(
        "access",
        help="broker users for devices and partners; API tokens",
        description="Users of the broker's SASL_SSL listener (HUB_KAFKA_SASL_BOOTSTRAP, "
        "SCRAM-SHA-512 over TLS, trusting HUB_KAFKA_CA): a device may only produce telemetry; "
        "a partner may only read its "
        "region's partner topics. add-device and add-partner print the username and a new "
        "password (again for an existing user: its password is replaced). Bearer tokens of the "
        "management API and web page: add-token prints a token once (only its hash is kept).",
    )
    access_actions = access_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    device = access_actions.add_parser(
        "add-device", help="a device that may only produce to testbed.telemetry.v1"
    )
    device.add_argument("device_id", help="a registered device, e.g. GJ-BUK-0012-CAM1")
    bulk = access_actions.add_parser(
        "add-devices",
        help="every device of a demonstration at once: logins and signing keys, in one file",
        description="Issues each device of the demonstration a login (a new password) and a new "
        "signing key (a rotation for devices holding one: what the broker appended before "
        "keeps the old key) through Kafka's Admin API, in one request per kind, and writes "
        "them to FILE as CSV (device_id, username, password, signing_key), readable by its "
        "owner only. An existing FILE is refused.",
    )
    bulk.add_argument("--demonstration", required=True, help="e.g. DEMO-001")
    bulk.add_argument("--out", required=True, type=Path, help="the file to create")
    rotate = access_actions.add_parser(
        "rotate-key",
        help="a new signing key for a device; records appended before keep the old one",
        description="Prints a new HMAC-SHA256 signing key. Records the broker appended before "
        "the rotation are still judged by the old key (a backlog the workers have not reached "
        "is not rejected); records appended from now on need the new one. The broker login "
        "and password do not change.",
    )
    rotate.add_argument("device_id", help="a registered device, e.g. GJ-BUK-0012-CAM1")
    partner = access_actions.add_parser(
        "add-partner", help="a partner that may only read partner.<region>.* topics"
    )
    partner.add_argument("region", help="a region of the hub: gwangju, jeonnam, or one added")
    partner.add_argument("name", help="the partner's name; its consumer groups are NAME.*")
    revoke = access_actions.add_parser("revoke", help="remove a user: new connections fail")
    revoke.add_argument("username", help="as printed by add-device / add-partner")
    token = access_actions.add_parser(
        "add-token",
        help="a bearer token for the management API and its web page (printed once)",
        description="operator sees everything; partner:<region> that region's sites, alerts "
        "and overview rows, and the scorecards of the demonstrations running there over its "
        "sites; company:<company> only its demonstrations' scorecards, sites and alerts; "
        "procurement every scorecard, KPI result and comparison, and changes nothing.",
    )
    token.add_argument(
        "role",
        help="operator, partner:<region> (hub regions list), company:<company> or procurement",
    )
    token.add_argument("name", help="who holds it, e.g. jeonnam-office (unique)")
    revoke_token = access_actions.add_parser(
        "revoke-token", help="withdraw an API token: its requests answer 401"
    )
    revoke_token.add_argument("name", help="as given to add-token")
    access_actions.add_parser("list-tokens", help="the API tokens issued: name, role, when")
    access_parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub import access
    from hub.audit import cli_actor

    if args.action in ("add-token", "revoke-token", "list-tokens"):
        return asyncio.run(_tokens(settings, args))
    if args.action == "revoke":
        access.revoke(settings, args.username, cli_actor())
        print(f"revoked {args.username}: its password and ACLs are gone, new connections fail")
        return 0
    if args.action == "add-devices":
        began = time.monotonic()
        count = access.add_devices(settings, args.demonstration, args.out, cli_actor())
        print(
            f"{count} devices of {args.demonstration}: logins and signing keys in {args.out} "
            f"(mode 600) in {time.monotonic() - began:.1f} s"
        )
        return 0
    if args.action == "rotate-key":
        key = access.rotate_key(settings, args.device_id, cli_actor())
        print(f"signing    {key.hex()}")
        print(
            "           (from now on; records the broker appended before are still judged by "
            "the old key)"
        )
        return 0
    if args.action == "add-device":
        created = access.add_device(settings, args.device_id, cli_actor())
        allowed = (
            f"produce to {TELEMETRY_TOPIC} (at most {settings.device_byte_rate:,} bytes/s), "
            "as this device only; read nothing"
        )
    else:
        created = access.add_partner(settings, args.region, args.name, cli_actor())
        allowed = f"read partner.{args.region}.* in consumer groups named {args.name}.*"
    print(f"username   {created.username}")
    print(f"password   {created.password}")
    if created.signing_key is not None:
        print(f"signing    {created.signing_key.hex()}")
        print(
            "           (HMAC-SHA256 of each record's value under this key, as header "
            "hub-signature: v1=<hex>; docs/security.md)"
        )
    print(f"bootstrap  {settings.kafka_sasl_bootstrap} (SASL_SSL, {access.MECHANISM})")
    print(f"trust      {settings.kafka_ca} (the CA of the broker's certificate; docs/security.md)")
    print(f"may        {allowed}")
    return 0


async def _tokens(settings: Settings, args: argparse.Namespace) -> int:
    from hub import tokens
    from hub.audit import cli_actor
    from hub.db import connect
    from hub.db.migrate import migrate

    conn = await connect(settings)
    try:
        await migrate(conn)
        if args.action == "add-token":
            token = await tokens.add_token(conn, args.role, args.name, cli_actor())
            base = f"http://127.0.0.1:{settings.api_port}"
            print(f"token      {token}")
            print(f"role       {args.role} (shown once: only a hash of the token is stored)")
            print(f"API        curl -H 'Authorization: Bearer {token}' {base}/api/v1/overview")
            print(f"web page   {base}/#token={token}")
        elif args.action == "revoke-token":
            if not await tokens.revoke_token(conn, args.name, cli_actor()):
                raise tokens.TokenError(f"no token named {args.name!r} (hub access list-tokens)")
            print(f"revoked token {args.name}: requests with it answer 401 from now on")
        else:
            for name, role, issued in await tokens.list_tokens(conn):
                print(f"{name:<24} {role:<32} {issued}")
    finally:
        await conn.close()
    return 0
