"""SMSC simulator for the homeserver-ext integration tests.

Runs the PyPI `smpp34` SMPP server on 127.0.0.1:PORT and prints one JSON object per line on stdout:
{"event": "listening"} once accepting, {"event": "bound", "system_id": ...} per bound ESME,
{"event": "submit_sm", "destination_addr": ..., "data_coding": ..., "esm_class": ..., "text": ...} per
message (accepted with a fresh message id), {"event": "unbound"} when a session ends.

Usage: python smsc_sim.py PORT [HANG_DESTINATION]

With HANG_DESTINATION (digits, as in destination_addr), a submit_sm to it is never answered (a slow SMSC):
it is reported as usual and then as {"event": "held", "destination_addr": ...}, and kept without a decision.
"""

import asyncio
import json
import sys

import smpp34


def emit(obj):
    print(json.dumps(obj), flush=True)


def text(value):
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


def decode(data_coding, raw):
    if data_coding == 0x08:
        return raw.decode("utf-16-be", errors="replace")
    return raw.decode("latin-1")


async def main(port, hang=None):
    held = []
    server = smpp34.Server(host="127.0.0.1", port=port, system_id="SIMSMSC")
    await server.start()
    emit({"event": "listening", "port": port})
    n = 0
    while True:
        ev = await server.next()
        if isinstance(ev, smpp34.SubmitSmEvent):
            n += 1
            raw = bytes(ev.short_message)
            emit({
                "event": "submit_sm",
                "source_addr": text(ev.source_addr),
                "destination_addr": text(ev.destination_addr),
                "dest_addr_ton": ev.dest_addr_ton,
                "data_coding": ev.data_coding,
                "esm_class": ev.esm_class,
                "text": decode(ev.data_coding, raw),
            })
            if hang is not None and text(ev.destination_addr) == hang:
                # Kept, so the event is never dropped (which would NAK it): no answer at all.
                held.append(ev)
                emit({"event": "held", "destination_addr": hang})
                continue
            done = ev.accept(message_id=f"sim{n}")
            if asyncio.iscoroutine(done):
                await done
        elif isinstance(ev, smpp34.Unbound):
            emit({"event": "unbound"})
        else:
            emit({"event": "bound", "system_id": text(getattr(ev, "system_id", None))})


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
