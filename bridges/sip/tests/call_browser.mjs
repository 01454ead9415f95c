// A Matrix user in headless Chromium making and taking voice calls with matrix-js-sdk (call_page.mjs), for the
// SIP bridge's media test. It bundles the page with esbuild, serves it on 127.0.0.1, opens it in Debian's
// Chromium (driven by playwright-core, fake microphone, ICE on loopback) and follows the test's commands.
//
// Input: the JSON object in TINCAN_JS_ARGS: { "base_url", "user_id", "access_token", "device_id",
// "commands": "/path/file.jsonl", "timeout_ms" (for the whole run), "log" (matrix-js-sdk's level, optional) };
// the npm packages from TINCAN_NODE_MODULES. Commands, one JSON object a line, appended to the file:
//   {"call": "!room"}   place a voice call in the room             → {"event":"placed","call_id"}
//   {"answer": true}    answer the (next) incoming call            → {"event":"answered","call_id"}
//   {"hangup": true}    hang up the current call                   → {"event":"hung_up"}
//   {"stats": true}     the peer connection's counters             → {"event":"stats","sent","received","energy",…}
//   {"quit": true}
// Output, one JSON object a line on stdout: {"event":"ready"}, the replies above, and what the page reports as
// it happens: {"event":"incoming","call_id","room_id"}, {"event":"state","state","old"},
// {"event":"hangup","reason","party"}, {"event":"call_error",…}, {"event":"browser","text"} (Chromium's
// console: warnings and errors, everything when "log" is given), {"event":"error","message"} (then exit 1).

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const modules = process.env.TINCAN_NODE_MODULES;
const require = createRequire(modules + "/");
const { chromium } = require("playwright-core");
const esbuild = require("esbuild");

const args = JSON.parse(process.env.TINCAN_JS_ARGS ?? "{}");
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let browser;
const fail = async (message) => {
  out({ event: "error", message: String(message) });
  await browser?.close().catch(() => {});
  process.exit(1);
};
const timeout = setTimeout(() => fail(`timed out after ${args.timeout_ms ?? 120000} ms`), args.timeout_ms ?? 120000);

// matrix-js-sdk's dependencies include CommonJS modules a browser cannot import: one bundle for the page.
const here = path.dirname(fileURLToPath(import.meta.url));
const build = fs.mkdtempSync(path.join(os.tmpdir(), "tincan-call-page-"));
await esbuild.build({
  entryPoints: [path.join(here, "call_page.mjs")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "chrome120",
  nodePaths: [modules],
  outfile: path.join(build, "page.js"),
  logLevel: "error",
});
const page_js = fs.readFileSync(path.join(build, "page.js"));
fs.rmSync(build, { recursive: true, force: true });

// Served from 127.0.0.1: a secure context, so getUserMedia is there.
const server = http.createServer((req, res) => {
  if (req.url === "/page.js") {
    res.writeHead(200, { "content-type": "text/javascript" });
    res.end(page_js);
  } else {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end('<!doctype html><html lang="en"><title>Tincan call test</title><script type="module" src="/page.js"></script>');
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));

browser = await chromium.launch({
  executablePath: process.env.TINCAN_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    // The fake microphone (a beep), granted without a prompt.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    // rtpengine's candidates are on 127.0.0.1: Chromium leaves loopback out of ICE unless told, and would
    // hide its own addresses behind mDNS names rtpengine cannot resolve.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
const context = await browser.newContext();
const page = await context.newPage();
await page.exposeFunction("report", (obj) => out(obj));
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warning" || args.log) out({ event: "browser", type: m.type(), text: m.text() });
});
page.on("pageerror", (e) => out({ event: "browser", type: "pageerror", text: String(e) }));
await page.goto(`http://127.0.0.1:${server.address().port}/`);
await page.waitForFunction(() => window.tincan !== undefined);
try {
  await page.evaluate((a) => window.tincan.start(a), {
    base_url: args.base_url,
    user_id: args.user_id,
    access_token: args.access_token,
    device_id: args.device_id,
    log: args.log,
  });
} catch (e) {
  await fail(`starting the client: ${e}`);
}
out({ event: "ready" });

let done = 0;
for (;;) {
  const text = fs.existsSync(args.commands) ? fs.readFileSync(args.commands, "utf8") : "";
  const complete = text.split("\n").slice(0, -1);
  if (done >= complete.length) {
    await new Promise((r) => setTimeout(r, 100));
    continue;
  }
  const cmd = JSON.parse(complete[done++]);
  if (cmd.quit) break;
  try {
    if (cmd.call) out({ event: "placed", call_id: await page.evaluate((room) => window.tincan.place(room), cmd.call) });
    if (cmd.answer) out({ event: "answered", call_id: await page.evaluate(() => window.tincan.answer()) });
    if (cmd.hangup) {
      await page.evaluate(() => window.tincan.hangup());
      out({ event: "hung_up" });
    }
    if (cmd.stats) out({ event: "stats", ...(await page.evaluate(() => window.tincan.stats())) });
  } catch (e) {
    await fail(`${JSON.stringify(cmd)}: ${e}`);
  }
}
clearTimeout(timeout);
await browser.close();
server.close();
