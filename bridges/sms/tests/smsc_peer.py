"""An SMSC for the SMS bridge's tests, on the PyPI `smpp34` server (an SMPP 3.4 implementation independent of
the rusmpp crates the bridge uses).

    python smsc_peer.py SMPP_PORT CONTROL_PORT

It accepts binds, answers every submit_sm and writes one JSON object per line on stdout:
  {"event": "listening"}                     once both ports accept
  {"event": "bound", "session": ..., "system_id": ...}
  {"event": "submit_sm", "n": ..., "session": ..., "source_addr": ..., "source_addr_ton": ...,
   "destination_addr": ..., "dest_addr_ton": ..., "esm_class": ..., "data_coding": ...,
   "registered_delivery": ..., "sm": "<hex>", "status": <command_status>, "message_id": ..., "t": <unix time>}
  {"event": "unbound", "session": ...}

The test steers it over CONTROL_PORT with one JSON command per line; each gets one JSON line back:
  {"cmd": "set", ...}     behaviour (keys below; unknown keys are an error)
      throttle_every: N      answer every Nth submit_sm with ESME_RTHROTTLED (0 = never)
      reject: {dest: status} answer submit_sm to that destination (digits) with that command_status
      dlr: "none" | "tlv" | "text" | "both"   send a delivery receipt for every accepted submit_sm that asks
      dlr_state: {dest: "UNDELIV"}             the receipt's state for a destination (default DELIVRD)
      dlr_before_resp: bool  send the receipt before answering the submit_sm
      id_format: "dec" | "hex"  answer message ids in decimal or hexadecimal; receipts always say decimal
      id_offset: N           message ids count from N (so that hexadecimal and decimal spellings differ)
      log_submits: bool      write the submit_sm lines (default true; the benchmark turns them off and counts
                             with stats)
  {"cmd": "deliver", "source": digits, "dest": digits, "esm_class": n, "data_coding": n, "hex": "<sm>",
   "tlvs": [[tag, "<hex>"], ...]}                     a deliver_sm to the most recently bound session
  {"cmd": "stats"}      {"submits": n, "accepted": n, "distinct": n, "sessions": [...]}: distinct counts the
                        accepted (destination, short_message) pairs, so resent duplicates count once
"""

import asyncio
import json
import sys
import time

import smpp34

STATES = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7,
          "REJECTD": 8}


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def text(value):
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


class Peer:
    def __init__(self):
        self.esmes = {}
        self.last = None
        self.n = 0
        self.throttle_every = 0
        self.reject = {}
        self.dlr = "none"
        self.dlr_state = {}
        self.dlr_before_resp = False
        self.id_format = "dec"
        self.id_offset = 0
        self.log_submits = True
        self.accepted = 0
        self.distinct = set()

    async def run(self, port, control_port):
        server = smpp34.Server(host="127.0.0.1", port=port, system_id="TESTSMSC")
        await server.start()
        control = await asyncio.start_server(self.control, "127.0.0.1", control_port)
        emit({"event": "listening", "port": port, "control": control_port})
        async with control:
            while True:
                ev = await server.next()
                if isinstance(ev, smpp34.SubmitSmEvent):
                    await self.submit(ev)
                elif isinstance(ev, smpp34.Unbound):
                    self.esmes.pop(ev.session_id, None)
                    emit({"event": "unbound", "session": ev.session_id})
                else:
                    self.esmes[ev.session_id] = ev
                    self.last = ev
                    emit({"event": "bound", "session": ev.session_id, "system_id": text(ev.system_id)})

    async def submit(self, ev):
        self.n += 1
        n = self.n
        dest = text(ev.destination_addr)
        status = self.reject.get(dest, 0)
        if status == 0 and self.throttle_every and n % self.throttle_every == 0:
            status = smpp34.ESME_RTHROTTLED
        number = n + self.id_offset
        mid = format(number, "X") if self.id_format == "hex" else str(number)
        sm = bytes(ev.short_message).hex()
        if status == 0:
            self.accepted += 1
            self.distinct.add((dest, sm))
        if self.log_submits:
            emit({
                "event": "submit_sm", "n": n, "session": ev.session_id,
                "source_addr": text(ev.source_addr), "source_addr_ton": ev.source_addr_ton,
                "destination_addr": dest, "dest_addr_ton": ev.dest_addr_ton,
                "esm_class": ev.esm_class, "data_coding": ev.data_coding,
                "registered_delivery": ev.registered_delivery, "sm": sm,
                "status": status, "message_id": mid if status == 0 else None, "t": time.time(),
            })
        wants_dlr = status == 0 and self.dlr != "none" and ev.registered_delivery & 0x01
        if wants_dlr and self.dlr_before_resp:
            await self.receipt(ev, number)
        if status == 0:
            done = ev.accept(message_id=mid)
        else:
            done = ev.reject(status)
        if asyncio.iscoroutine(done):
            await done
        if wants_dlr and not self.dlr_before_resp:
            asyncio.get_running_loop().create_task(self.receipt(ev, number))

    async def receipt(self, ev, n):
        esme = self.esmes.get(ev.session_id)
        if esme is None:
            return
        dest = text(ev.destination_addr)
        stat = self.dlr_state.get(dest, "DELIVRD")
        body = b""
        tlvs = []
        if self.dlr in ("text", "both"):
            body = (f"id:{n} sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:{stat} "
                    f"err:000 text:").encode()
        if self.dlr in ("tlv", "both"):
            tlvs = [smpp34.Tlv(0x001E, str(n).encode() + b"\0"), smpp34.Tlv(0x0427, bytes([STATES[stat]]))]
        try:
            await esme.deliver_sm(dest, body, source_addr=text(ev.source_addr), esm_class=0x04, tlvs=tlvs)
        except Exception as e:  # the session may be gone; a real SMSC would retry later
            emit({"event": "dlr_failed", "n": n, "error": str(e)})

    async def control(self, reader, writer):
        while line := await reader.readline():
            try:
                reply = await self.command(json.loads(line))
            except Exception as e:
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
        writer.close()

    async def command(self, c):
        cmd = c.pop("cmd")
        if cmd == "set":
            for key, value in c.items():
                if not hasattr(self, key) or key in ("esmes", "last", "n", "accepted", "distinct"):
                    raise ValueError(f"unknown setting {key}")
                setattr(self, key, value)
            return {"ok": True}
        if cmd == "deliver":
            # The ESME can see its bind answered before this loop has taken the bind event off the server's
            # queue: wait for it a while rather than fail a test that raced the bind.
            for _ in range(200):
                if self.last is not None:
                    break
                await asyncio.sleep(0.05)
            if self.last is None:
                raise ValueError("no bound session")
            tlvs = [smpp34.Tlv(int(t), bytes.fromhex(v)) for t, v in c.get("tlvs", [])]
            resp = await self.last.deliver_sm(
                c["dest"], bytes.fromhex(c.get("hex", "")), source_addr=c["source"],
                source_addr_ton=c.get("source_ton", 1), esm_class=c.get("esm_class", 0),
                data_coding=c.get("data_coding", 0), tlvs=tlvs)
            return {"ok": True, "status": resp.command_status}
        if cmd == "stats":
            return {"ok": True, "submits": self.n, "accepted": self.accepted, "distinct": len(self.distinct),
                    "sessions": list(self.esmes)}
        raise ValueError(f"unknown command {cmd}")


if __name__ == "__main__":
    asyncio.run(Peer().run(int(sys.argv[1]), int(sys.argv[2])))
