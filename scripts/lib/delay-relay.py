#!/usr/bin/env python3
"""A TCP relay that holds every chunk it reads for a while before passing it on, both ways:
the latency of a long link, for kernels built without netem (tc's delay). Loss and cuts are
made in the kernel (nftables, `ip link set down`) on the link the relay's upstream side uses.

    delay-relay.py LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_FILE

DELAY_FILE holds the one-way delay in milliseconds, read again every half second (absent or
empty: none), so that a benchmark changes the link without restarting anything.
"""
import asyncio
import sys
import time

delay = 0.0


async def watch(path):
    global delay
    while True:
        try:
            with open(path) as f:
                delay = float(f.read().strip() or 0) / 1000
        except (OSError, ValueError):
            delay = 0.0
        await asyncio.sleep(0.5)


async def pump(reader, writer):
    """Reads from one side; each chunk leaves for the other `delay` after it arrived."""
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            await queue.put((time.monotonic() + delay, data))
    except (ConnectionError, OSError):
        pass
    await queue.put((0.0, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass
    writer.close()


async def main():
    port, target, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    host, target_port = target.rsplit(":", 1)
    asyncio.create_task(watch(path))

    async def accept(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(target_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, upstream_writer), pump(upstream_reader, client_writer)
        )

    server = await asyncio.start_server(accept, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
