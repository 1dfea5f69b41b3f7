"""Live-update streams of one server process (docs/reliability.md P-26): N streams on the
process's one shared pub/sub connection (inbox/livehub.py) against the baseline, measured in
the same run, of a pub/sub connection per stream (what inbox/views/events.py held before).

For each: Redis connections and Redis memory (INFO) while the N streams are subscribed, and the
time from one PUBLISH until every stream has the event (median and worst of --events).

    .venv/bin/python bench/live.py --redis redis://127.0.0.1:6379/9 --streams 1000

Needs only Redis (flushes nothing; its channels are named after --redis' database).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(url: str) -> None:
    import django
    from django.conf import settings

    settings.configure(RELAY_LIVE_URL=url, USE_TZ=True)
    django.setup()


def redis_figures(client) -> tuple[int, int]:
    clients = client.info("clients")["connected_clients"]
    memory = client.info("memory")["used_memory"]
    return clients, memory


async def per_stream(url: str, n: int, events: int, channel: str, publisher):
    """The baseline: a redis-py pub/sub connection per stream, each read by its own task."""
    import redis.asyncio as aioredis

    clients = [aioredis.Redis.from_url(url) for _ in range(n)]
    pubsubs = [c.pubsub() for c in clients]
    for pubsub in pubsubs:
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1)  # the confirmation
    figures = redis_figures(publisher)

    async def read_one(pubsub):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            if message is not None:
                return

    times = []
    for i in range(events):
        readers = [asyncio.create_task(read_one(p)) for p in pubsubs]
        await asyncio.sleep(0)
        started = time.perf_counter()
        publisher.publish(channel, f'{{"kind":"mail","n":{i}}}')
        await asyncio.gather(*readers)
        times.append(time.perf_counter() - started)
    for pubsub, client in zip(pubsubs, clients, strict=True):
        await pubsub.aclose()
        await client.aclose()
    return figures, times


async def shared(n: int, events: int, channel: str, publisher):
    from inbox import livehub

    hub = livehub.hub()
    subscriptions = [hub.subscription() for _ in range(n)]
    for subscription in subscriptions:
        await subscription.want({channel})
    figures = redis_figures(publisher)
    times = []
    for i in range(events):
        readers = [asyncio.create_task(s.get(5)) for s in subscriptions]
        await asyncio.sleep(0)
        started = time.perf_counter()
        publisher.publish(channel, f'{{"kind":"mail","n":{i}}}')
        got = await asyncio.gather(*readers)
        times.append(time.perf_counter() - started)
        assert all(item is not None for item in got), "an event was lost"
    for subscription in subscriptions:
        await subscription.close()
    return figures, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    setup(args.redis)
    import redis

    from inbox import live

    publisher = redis.Redis.from_url(args.redis)
    channel = live.mailbox_channel(1)
    before = redis_figures(publisher)

    async def run():
        base = await per_stream(args.redis, args.streams, args.events, channel, publisher)
        await asyncio.sleep(0.5)  # the baseline's connections gone
        hub = await shared(args.streams, args.events, channel, publisher)
        return base, hub

    (base_fig, base_times), (hub_fig, hub_times) = asyncio.run(run())
    print(f"{args.streams} streams, {args.events} events, Redis {args.redis}")
    rows = (("a connection per stream", base_fig, base_times), ("one shared", hub_fig, hub_times))
    for name, (clients, memory), times in rows:
        print(
            f"  {name:24} Redis connections +{clients - before[0]:5d}  "
            f"Redis memory +{(memory - before[1]) / 1024:8.0f} KiB  "
            f"publish-to-all median {statistics.median(times) * 1000:7.1f} ms, "
            f"worst {max(times) * 1000:7.1f} ms"
        )
    ratio = (base_fig[0] - before[0]) / max(1, hub_fig[0] - before[0])
    print(
        f"  ratio: {ratio:.0f}x fewer Redis connections, "
        f"{(base_fig[1] - before[1]) / max(1, hub_fig[1] - before[1]):.1f}x less Redis memory, "
        f"median delivery {statistics.median(base_times) / statistics.median(hub_times):.1f}x"
    )


if __name__ == "__main__":
    main()
