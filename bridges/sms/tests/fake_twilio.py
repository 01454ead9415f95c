"""A stand-in for Twilio's Programmable Messaging API (the carrier's MMS API of the SMS bridge's tests), written
from Twilio's documentation with the Python standard library only:

    python fake_twilio.py PORT ACCOUNT_SID AUTH_TOKEN

- POST /2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP Basic auth AccountSid:AuthToken, a form with From,
  To, Body, MediaUrl (repeatable), StatusCallback: fetches every MediaUrl as Twilio does, answers 201 with the
  message resource ({"sid": "MM…", "status": "queued", …}); a wrong account or token is 401 (code 20003), a To
  that is not E.164 is 400 (code 21211), To +447400999001 is 400 code 21610 (the recipient unsubscribed).
- Then POSTs the status callbacks to StatusCallback as form data (MessageSid, MessageStatus, AccountSid, From,
  To, ApiVersion, ErrorCode when failed), signed in X-Twilio-Signature (Base64 of HMAC-SHA1 keyed with the auth
  token over the URL followed by each parameter's name and value, sorted by name): "sent" then "delivered", or
  "undelivered" with ErrorCode 30003 for To +447400999002.

- Incoming messages (what Twilio does when a phone sends to one of the account's numbers), started by the test
  with POST /_test/inbound and a JSON body {"webhook", "from", "to", "body", "media": [{"content_type", "hex"}],
  "sid" (optional: the same sid sends the same message again), "signature" (optional: sent instead of the right
  one)}: the media are served at /2010-04-01/Accounts/{AccountSid}/Messages/{sid}/Media/ME… (HTTP Basic auth
  required, as with Twilio's "HTTP Basic Authentication for media access"), and the webhook gets the signed form
  (MessageSid, SmsSid, AccountSid, From, To, Body, NumMedia, NumSegments, MediaUrlN, MediaContentTypeN,
  ApiVersion). The answer is {"sid", "status", "content_type", "body"} of the webhook's answer.

One JSON object a line on stdout: {"event": "listening"}, {"event": "message", "from", "to", "body",
"media": [{"url", "status", "content_type", "hex"}], "status_callback", "sid"}, {"event": "refused", ...},
{"event": "callback", "sid", "status", "answer"}, {"event": "media", "path", "status"}, {"event": "inbound",
"sid", "answer"}.
"""

import base64
import hashlib
import hmac
import json
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, ACCOUNT, TOKEN = int(sys.argv[1]), sys.argv[2], sys.argv[3]
UNSUBSCRIBED = "+447400999001"
UNDELIVERABLE = "+447400999002"
MEDIA = {}  # path -> (content type, bytes)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def signature(url, params):
    data = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def callback(url, params):
    body = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature(url, params)})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:  # the bridge may be gone
        return str(e)


def report(msg):
    statuses = ["sent", "undelivered"] if msg["To"] == UNDELIVERABLE else ["sent", "delivered"]
    for status in statuses:
        time.sleep(0.2)
        params = [("MessageSid", msg["sid"]), ("SmsSid", msg["sid"]), ("MessageStatus", status),
                  ("AccountSid", ACCOUNT), ("From", msg["From"]), ("To", msg["To"]), ("ApiVersion", "2010-04-01")]
        if status == "undelivered":
            params.append(("ErrorCode", "30003"))
        answer = callback(msg["StatusCallback"], params)
        emit({"event": "callback", "sid": msg["sid"], "status": status, "answer": answer})


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, code, message):
        emit({"event": "refused", "status": status, "code": code, "message": message})
        self.answer(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                             "status": status})

    def authorised(self):
        want = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        return hmac.compare_digest(self.headers.get("Authorization", ""), want)

    def do_GET(self):
        item = MEDIA.get(self.path)
        if item is None:
            status = 404
        elif not self.authorised():
            status = 401
        else:
            status = 200
        emit({"event": "media", "path": self.path, "status": status})
        if status != 200:
            return self.answer(status, {"code": 20003 if status == 401 else 20404, "status": status})
        content_type, data = item
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def inbound(self):
        spec = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        sid = spec.get("sid") or "MM" + uuid.uuid4().hex
        params = [("MessageSid", sid), ("SmsSid", sid), ("AccountSid", ACCOUNT), ("From", spec["from"]),
                  ("To", spec["to"]), ("Body", spec.get("body", "")), ("NumMedia", str(len(spec.get("media", [])))),
                  ("NumSegments", "1"), ("ApiVersion", "2010-04-01")]
        for i, item in enumerate(spec.get("media", [])):
            path = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}/Media/ME{i:032x}"
            MEDIA[path] = (item["content_type"], bytes.fromhex(item["hex"]))
            params += [(f"MediaUrl{i}", f"http://127.0.0.1:{PORT}{path}"), (f"MediaContentType{i}", item["content_type"])]
        body = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(spec["webhook"], data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": spec.get("signature") or signature(spec["webhook"], params)})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = {"status": r.status, "content_type": r.headers.get("Content-Type"), "body": r.read().decode()}
        except urllib.error.HTTPError as e:
            answer = {"status": e.code, "content_type": e.headers.get("Content-Type"), "body": e.read().decode()}
        emit({"event": "inbound", "sid": sid, "answer": answer["status"]})
        self.answer(200, dict(answer, sid=sid))

    def do_POST(self):
        if self.path == "/_test/inbound":
            return self.inbound()
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/Messages\.json", self.path)
        if not m:
            return self.error(404, 20404, "The requested resource was not found")
        auth = self.headers.get("Authorization", "")
        want = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if m.group(1) != ACCOUNT or not hmac.compare_digest(auth, want):
            return self.error(401, 20003, "Authenticate")
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        one = lambda k: form.get(k, [""])[0]
        to, sender = one("To"), one("From")
        if not re.fullmatch(r"\+[1-9]\d{6,14}", to):
            return self.error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to == UNSUBSCRIBED:
            return self.error(400, 21610, "Attempt to send to unsubscribed recipient")
        media = []
        for url in form.get("MediaUrl", []):
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    media.append({"url": url, "status": r.status, "content_type": r.headers.get("Content-Type"),
                                  "hex": r.read().hex()})
            except urllib.error.HTTPError as e:
                media.append({"url": url, "status": e.code})
        sid = "MM" + uuid.uuid4().hex
        msg = {"sid": sid, "From": sender, "To": to, "StatusCallback": one("StatusCallback")}
        emit({"event": "message", "sid": sid, "from": sender, "to": to, "body": one("Body"), "media": media,
              "status_callback": one("StatusCallback")})
        self.answer(201, {"sid": sid, "account_sid": ACCOUNT, "from": sender, "to": to, "body": one("Body"),
                          "status": "queued", "num_media": str(len(media)), "num_segments": "1",
                          "api_version": "2010-04-01",
                          "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"})
        if msg["StatusCallback"]:
            threading.Thread(target=report, args=(msg,), daemon=True).start()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    emit({"event": "listening", "port": PORT})
    server.serve_forever()
