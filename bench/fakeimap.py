"""A light asyncio IMAP server for bench/push.py's session mode: it speaks just enough IMAP for
the push gateway's client (connector/transport/idle.py) to log in, EXAMINE and sit in IDLE, so
one machine can hold 10,000 sessions without 10,000 Dovecot processes. It never delivers mail.
Run by hand: python bench/fakeimap.py --port 1143 [--tls CERT KEY]."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys

CAPS = b"IMAP4rev1 IDLE LITERAL+ AUTH=PLAIN"


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"* OK fake IMAP ready\r\n")
    try:
        while line := await reader.readline():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            verb = rest.split(b" ", 1)[0].upper()
            if verb == b"CAPABILITY":
                writer.write(b"* CAPABILITY " + CAPS + b"\r\n" + tag + b" OK done\r\n")
            elif verb in (b"LOGIN", b"AUTHENTICATE"):
                writer.write(tag + b" OK logged in\r\n")
            elif verb == b"EXAMINE":
                writer.write(
                    b"* 0 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n* OK [UIDNEXT 1] ok\r\n"
                    + tag
                    + b" OK [READ-ONLY] done\r\n"
                )
            elif verb == b"IDLE":
                writer.write(b"+ idling\r\n")
                await writer.drain()
                done = await reader.readline()
                if not done:
                    break
                writer.write(tag + b" OK idle done\r\n")
            elif verb == b"LOGOUT":
                writer.write(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(tag + b" OK done\r\n")
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(port: int, tls: tuple[str, str] | None) -> None:
    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
    server = await asyncio.start_server(session, "127.0.0.1", port, ssl=context, backlog=4096)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    try:
        asyncio.run(main(args.port, tuple(args.tls) if args.tls else None))
    except KeyboardInterrupt:
        sys.exit(0)
