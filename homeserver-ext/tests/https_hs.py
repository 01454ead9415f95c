"""A homeserver's OpenID userinfo endpoint (and `.well-known/matrix/server`) over HTTPS, for the
account/register fetch and server discovery tests.

Makes a self-signed certificate for NAMES (comma-separated DNS names and IP addresses; `localhost,127.0.0.1`
unless --names is given), written to DIR/cert.pem, which the extension under test trusts through
SSL_CERT_FILE; serves HTTPS on BIND:PORT (127.0.0.1 unless --bind is given) and prints one JSON object per
line: {"event": "listening"} once accepting, {"event": "request", "path": ..., "host": ...} per request.

GET /_matrix/federation/v1/openid/userinfo?access_token=T answers
- T = "redirect": 302 to REDIRECT (a URL the extension must not follow);
- T starting with "@": 200 {"sub": T}, as a homeserver vouching for the user T;
- any other T: 200 {"sub": SUB} (SUB defaults to "@alice:localhost:PORT").
GET /.well-known/matrix/server answers 200 WELL_KNOWN when --well-known is given, else 404.

Usage: python https_hs.py PORT DIR REDIRECT [--bind ADDR] [--names NAMES] [--sub SUB] [--well-known JSON]
"""

import argparse
import datetime
import http.server
import ipaddress
import json
import ssl
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("dir")
parser.add_argument("redirect")
parser.add_argument("--bind", default="127.0.0.1")
parser.add_argument("--names", default="localhost,127.0.0.1")
parser.add_argument("--sub")
parser.add_argument("--well-known")
ARGS = parser.parse_args()
PORT, DIR, REDIRECT = ARGS.port, ARGS.dir, ARGS.redirect
SUB = ARGS.sub or f"@alice:localhost:{PORT}"


def emit(obj):
    print(json.dumps(obj), flush=True)


def san(name):
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_cert():
    names = ARGS.names.split(",")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with open(f"{DIR}/cert.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(f"{DIR}/key.pem", "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        emit({"event": "request", "path": self.path, "host": self.headers.get("Host")})
        url = urllib.parse.urlparse(self.path)
        token = urllib.parse.parse_qs(url.query).get("access_token", [""])[0]
        if url.path == "/.well-known/matrix/server" and ARGS.well_known is not None:
            self.reply(200, json.loads(ARGS.well_known))
        elif url.path != "/_matrix/federation/v1/openid/userinfo":
            self.reply(404)
        elif token == "redirect":
            self.reply(302, headers=[("Location", REDIRECT)])
        else:
            self.reply(200, {"sub": token if token.startswith("@") else SUB})


make_cert()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{DIR}/cert.pem", f"{DIR}/key.pem")
server = http.server.ThreadingHTTPServer((ARGS.bind, PORT), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
emit({"event": "listening"})
server.serve_forever()
