// One side of an encrypted DM, for Tincan's tests: matrix-js-sdk with its Rust crypto (no IndexedDB: the
// crypto store is in memory, fake-indexeddb only stands in for the browser API the SDK probes for).
//
// Input: the JSON object in TINCAN_JS_ARGS:
//   { "base_url", "user_id", "access_token", "device_id", "room_id",
//     "send": "text to send" (optional), "expect_sender": "@ghost:hs", "expect_body": "text" (optional),
//     "expect_senders": ["@ghost:hs", …] (optional: a group room; "ready" waits for each of them),
//     "timeout_ms" (for the whole run), "commands": "/path/file.jsonl" (optional) }
// Messages from anyone but the user are recorded; "received" names the sender.
// With "commands", after the optional send/expect the script keeps running and follows the file as it grows,
// one JSON object per line: {"send": "text"} (→ "sent"), {"expect": "text"} (→ "received", the message from
// expect_sender with that body, seen at any time since the start), {"expect_status": "$event"} (→ "status", the
// com.beeper.message_send_status expect_sender sent about that event), {"withhold_keys": true} (→ "withholding":
// from now on Olm-encrypted to-device messages, which carry room keys, are answered as sent but kept back),
// {"release_keys": true} (→ "released": what was kept back goes out, in order), {"new_session": true}
// (→ "new_session": the next message starts a new Megolm session, so its room key is shared anew),
// {"blacklist_unverified": true} (→ "blacklisting": room keys go to verified devices only, the others get
// m.room_key.withheld),
// {"quit": true}.
// Output: one JSON object per line on stdout:
//   {"event":"ready"}                         synced, in the room, encryption on, the other party's keys known
//   {"event":"sent","event_id":"$…"}          the message went out (encrypted)
//   {"event":"received","body":"…","encrypted":true,"event_id":"$…"}   the expected message, decrypted
//   {"event":"status","content":{…},"relates_to":"$…","encrypted":true}  the expected status, decrypted
//   {"event":"withholding"} / {"event":"released","count":N} / {"event":"new_session"}
//   {"event":"error","message":"…"}           then exit code 1
import "fake-indexeddb/auto";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const args = JSON.parse(process.env.TINCAN_JS_ARGS ?? "{}");
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (message) => {
  out({ event: "error", message: String(message) });
  process.exit(1);
};
logger.setLevel(process.env.TINCAN_JS_LOG ?? "warn");
const timeout = setTimeout(() => fail(`timed out after ${args.timeout_ms ?? 60000} ms`), args.timeout_ms ?? 60000);

const client = sdk.createClient({
  baseUrl: args.base_url,
  userId: args.user_id,
  accessToken: args.access_token,
  deviceId: args.device_id,
});
await client.initRustCrypto({ useIndexedDB: false });

// Room keys that come late, for tests of a receiver waiting for them: while `withheld` is a list, the crypto's
// to-device sends of Olm-encrypted messages are answered as the homeserver would (an empty object) and kept in
// it, so the room event goes out and its key does not.
let withheld = null;
const authedRequest = client.http.authedRequest.bind(client.http);
client.http.authedRequest = (method, path, queryParams, body, opts) => {
  if (withheld && method === "PUT" && path.startsWith("/_matrix/client/v3/sendToDevice/m.room.encrypted/")) {
    withheld.push([method, path, queryParams, body, opts]);
    return Promise.resolve(opts?.json === false ? "{}" : {});
  }
  return authedRequest(method, path, queryParams, body, opts);
};

const waitFor = (what, check, everyMs = 100) =>
  new Promise((resolve, reject) => {
    const tick = async () => {
      try {
        const v = await check();
        if (v) return resolve(v);
      } catch (e) {
        return reject(new Error(`${what}: ${e}`));
      }
      setTimeout(tick, everyMs);
    };
    tick();
  });

// Messages of interest, decrypted, from the moment the client starts.
const received = [];
const statuses = [];
const consider = async (ev) => {
  if (ev.getRoomId() !== args.room_id) return;
  await client.decryptEventIfNeeded(ev);
  if (ev.getType() === "m.room.message" && ev.getSender() !== args.user_id) {
    received.push({ body: ev.getContent().body, sender: ev.getSender(), encrypted: ev.isEncrypted(),
      event_id: ev.getId(), failed: ev.isDecryptionFailure() });
  }
  if (ev.getType() === "com.beeper.message_send_status" && ev.getSender() === args.expect_sender) {
    // In an encrypted room the relation travels outside the ciphertext (in the wire content).
    const relation = ev.getWireContent()["m.relates_to"] ?? ev.getContent()["m.relates_to"];
    statuses.push({ content: ev.getContent(), relates_to: relation?.event_id, encrypted: ev.isEncrypted() });
  }
};
client.on(sdk.RoomEvent.Timeline, (ev) => void consider(ev));
client.on(sdk.MatrixEventEvent.Decrypted, (ev) => void consider(ev));

await client.startClient({ initialSyncLimit: 20 });
await waitFor("the first sync", () => client.isInitialSyncComplete());
const room = await waitFor("the room", async () => {
  const r = client.getRoom(args.room_id);
  if (r?.getMyMembership() === "invite") await client.joinRoom(args.room_id);
  return r?.getMyMembership() === "join" ? r : null;
});
await waitFor("encryption in the room", () => client.getCrypto().isEncryptionEnabledInRoom(args.room_id));
for (const other of args.expect_senders ?? (args.expect_sender ? [args.expect_sender] : [])) {
  await waitFor(`${other} in the room`, () => room.getMember(other)?.membership === "join");
  // Its device may upload its keys after joining: until they are known here, a message would be encrypted for
  // none of its devices.
  await waitFor(
    `${other}'s device keys`,
    async () => (await client.getCrypto().getUserDeviceInfo([other], true)).get(other)?.size > 0,
    250,
  );
}
out({ event: "ready" });

if (args.send) {
  const { event_id } = await client.sendMessage(args.room_id, { msgtype: "m.text", body: args.send });
  out({ event: "sent", event_id });
}
if (args.expect_body !== undefined) {
  const got = await waitFor("the expected message", () =>
    received.find((r) => r.body === args.expect_body && !r.failed),
  );
  out({ event: "received", ...got });
}
if (args.commands) {
  const fs = await import("node:fs");
  let done = 0;
  for (;;) {
    const text = fs.existsSync(args.commands) ? fs.readFileSync(args.commands, "utf8") : "";
    const lines = text.split("\n");
    const complete = lines.slice(0, -1);
    if (done >= complete.length) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const cmd = JSON.parse(complete[done++]);
    if (cmd.quit) break;
    if (cmd.send !== undefined) {
      const { event_id } = await client.sendMessage(args.room_id, { msgtype: "m.text", body: cmd.send });
      out({ event: "sent", event_id });
    }
    if (cmd.withhold_keys) {
      withheld = [];
      out({ event: "withholding" });
    }
    if (cmd.release_keys) {
      const kept = withheld ?? [];
      withheld = null;
      for (const request of kept) await authedRequest(...request);
      out({ event: "released", count: kept.length });
    }
    if (cmd.blacklist_unverified) {
      client.getCrypto().globalBlacklistUnverifiedDevices = true;
      out({ event: "blacklisting" });
    }
    if (cmd.new_session) {
      await client.getCrypto().forceDiscardSession(args.room_id);
      out({ event: "new_session" });
    }
    if (cmd.expect_status !== undefined) {
      const got = await waitFor("the expected status", () =>
        statuses.find((s) => s.relates_to === cmd.expect_status),
      );
      out({ event: "status", ...got });
    }
    if (cmd.expect !== undefined) {
      const got = await waitFor("the expected message", () =>
        received.find((r) => r.body === cmd.expect && !r.failed),
      );
      out({ event: "received", ...got });
    }
  }
}
clearTimeout(timeout);
client.stopClient();
process.exit(0);
