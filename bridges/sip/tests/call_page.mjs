// The page of the SIP bridge's media test, bundled by call_browser.mjs (esbuild) and run in headless Chromium:
// a Matrix user's client making and taking voice calls with matrix-js-sdk's own call API (MatrixCall over
// RTCPeerConnection, the fake microphone), as Element Web does. No end-to-end encryption: the test's rooms are
// not encrypted.
//
// It exposes `window.tincan` for the driver (call_browser.mjs) and reports what happens through
// `window.report(object)`, which the driver prints as JSON lines.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { CallErrorCode } from "matrix-js-sdk/lib/webrtc/call.js";

let client;
let call = null;
let incoming = [];

const report = (obj) => window.report(obj);

// The call's life, for the test: its states, how it ended, and its remote audio played (so Chromium decodes
// it and the inbound audio energy is measured).
function follow(c) {
  call = c;
  c.on(sdk.CallEvent.State, (state, old) => report({ event: "state", state, old, call_id: c.callId }));
  c.on(sdk.CallEvent.Hangup, () =>
    report({ event: "hangup", call_id: c.callId, reason: c.hangupReason, party: c.hangupParty }),
  );
  c.on(sdk.CallEvent.Error, (e) => report({ event: "call_error", call_id: c.callId, code: e.code, message: String(e) }));
  c.on(sdk.CallEvent.FeedsChanged, (feeds) => {
    for (const feed of feeds) {
      if (feed.isLocal() || document.getElementById(feed.stream.id)) continue;
      const audio = document.createElement("audio");
      audio.id = feed.stream.id;
      audio.autoplay = true;
      audio.srcObject = feed.stream;
      document.body.appendChild(audio);
      audio.play().catch((e) => report({ event: "log", message: `play: ${e}` }));
    }
  });
}

window.tincan = {
  async start({ base_url, user_id, access_token, device_id, log }) {
    logger.setLevel(log ?? "warn");
    client = sdk.createClient({ baseUrl: base_url, userId: user_id, accessToken: access_token, deviceId: device_id });
    if (!client.supportsVoip()) throw new Error("matrix-js-sdk says this browser cannot do calls");
    client.on("Call.incoming", (c) => {
      incoming.push(c);
      report({ event: "incoming", call_id: c.callId, room_id: c.roomId, state: c.state });
    });
    // A call from a phone may come in a new room (the bridge's portal): join it, as a person would.
    client.on(sdk.RoomEvent.MyMembership, (room, membership) => {
      if (membership === "invite") {
        client.joinRoom(room.roomId).catch((e) => report({ event: "log", message: `join: ${e}` }));
      }
    });
    client.startClient({ initialSyncLimit: 1 });
    await new Promise((resolve) => {
      const check = () => (client.isInitialSyncComplete() ? resolve() : setTimeout(check, 100));
      check();
    });
  },

  async place(room_id) {
    const c = sdk.createNewMatrixCall(client, room_id);
    if (!c) throw new Error("createNewMatrixCall gave no call");
    follow(c);
    await c.placeVoiceCall();
    return c.callId;
  },

  async answer() {
    const c = incoming.shift();
    if (!c) throw new Error("no incoming call to answer");
    follow(c);
    await c.answer(true, false);
    return c.callId;
  },

  hangup() {
    if (!call) throw new Error("no call to hang up");
    call.hangup(CallErrorCode.UserHangup, false);
  },

  state() {
    return call?.state ?? null;
  },

  // What the peer connection counted: RTP sent and received, and the energy of the audio received.
  async stats() {
    const out = { sent: 0, received: 0, energy: 0, audio_level: 0, codec: null };
    const pc = call?.peerConn;
    if (!pc) return out;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "audio") out.sent += s.packetsSent ?? 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        out.received += s.packetsReceived ?? 0;
        out.energy += s.totalAudioEnergy ?? 0;
        out.audio_level = Math.max(out.audio_level, s.audioLevel ?? 0);
        out.codec = report.get(s.codecId)?.mimeType ?? out.codec;
      }
    });
    report.forEach((s) => {
      if (s.type === "transport") {
        out.dtls = s.dtlsState;
        const pair = report.get(s.selectedCandidatePairId);
        const local = pair && report.get(pair.localCandidateId);
        const remote = pair && report.get(pair.remoteCandidateId);
        if (local && remote) out.pair = `${local.address}:${local.port} -> ${remote.address}:${remote.port}`;
      }
    });
    out.ice = pc.iceConnectionState;
    out.connection = pc.connectionState;
    return out;
  },
};
