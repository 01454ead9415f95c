"""A homeserver's OpenID userinfo endpoint over HTTPS, for the account/register fetch tests.

Makes a self-signed certificate for `localhost` and 127.0.0.1 (written to DIR/cert.pem, which the extension
under test trusts through SSL_CERT_FILE), serves HTTPS on 127.0.0.1:PORT and prints one JSON object per line:
{"event": "listening"} once accepting, {"event": "request", "path": ...} per request.

GET /_matrix/federation/v1/openid/userinfo?access_token=T answers
- T = "redirect": 302 to REDIRECT (a URL the extension must not follow);
- any other T: 200 {"sub": "@alice:localhost:PORT"}, as a homeserver vouching for its user.

Usage: python https_hs.py PORT DIR REDIRECT
"""

import datetime
import http.server
import ipaddress
import json
import ssl
import sys
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PORT, DIR, REDIRECT = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def emit(obj):
    print(json.dumps(obj), flush=True)


def make_cert():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
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

    def do_GET(self):
        emit({"event": "request", "path": self.path})
        url = urllib.parse.urlparse(self.path)
        token = urllib.parse.parse_qs(url.query).get("access_token", [""])[0]
        if url.path != "/_matrix/federation/v1/openid/userinfo":
            self.send_response(404)
            self.end_headers()
        elif token == "redirect":
            self.send_response(302)
            self.send_header("Location", REDIRECT)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = json.dumps({"sub": f"@alice:localhost:{PORT}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


make_cert()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{DIR}/cert.pem", f"{DIR}/key.pem")
server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
emit({"event": "listening"})
server.serve_forever()
