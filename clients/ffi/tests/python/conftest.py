"""The chain the Rust test (tests/it/python.rs) started, as fixtures: its addresses come in TINCAN_FFI_* variables.

Run through `dev/test -p tincan-ffi`; run alone, the suite is skipped.
"""

import json
import os
import time
import urllib.request

import pytest

ENV = "TINCAN_FFI_EXT_URL"


def pytest_collection_modifyitems(config, items):
    if os.environ.get(ENV):
        return
    skip = pytest.mark.skip(reason=f"{ENV} not set: run through tests/it/python.rs (dev/test -p tincan-ffi)")
    for item in items:
        item.add_marker(skip)


class Chain:
    """Addresses of the running chain and the helpers a test needs from its operator's side."""

    def __init__(self):
        env = os.environ
        self.ext_url = env["TINCAN_FFI_EXT_URL"]
        self.sms_file = env["TINCAN_FFI_SMS_FILE"]
        self.dns = env["TINCAN_FFI_DNS"]
        self.apex = env["TINCAN_FFI_APEX"]
        self.anchor = env["TINCAN_FFI_ANCHOR"]
        self.log_url = env["TINCAN_FFI_LOG_URL"]
        self.log_key = env["TINCAN_FFI_LOG_KEY"]
        self.registrar = env["TINCAN_FFI_REGISTRAR"]
        self.registrar_token = env["TINCAN_FFI_REGISTRAR_TOKEN"]
        self.tampered = env["TINCAN_FFI_TAMPERED"]

    def config(self, tincan_ffi, data_dir, key):
        directory = tincan_ffi.DirectoryConfig(
            servers=[self.dns],
            apex=self.apex,
            trust_anchor=self.anchor,
            allow_insecure=False,
            log_url=self.log_url,
            log_key=self.log_key,
        )
        return tincan_ffi.ClientConfig(
            data_dir=str(data_dir),
            store_key=key,
            ext_url=self.ext_url,
            directory=directory,
            device_name="python test",
        )

    def code(self, number, timeout=30.0):
        """The code of the newest SMS the extension's dev sink holds for `number`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.sms_file) as f:
                    msgs = [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                msgs = []
            for m in reversed(msgs):
                if m.get("to") == number:
                    words = "".join(c if c.isdigit() else " " for c in m.get("text", "")).split()
                    codes = [w for w in words if len(w) == 6]
                    if codes:
                        return codes[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no SMS code to {number}")
            time.sleep(0.05)

    def put_number(self, number, services, key=None):
        """Adds a record through the provider's registrar API (as the provider itself can)."""
        body = {"services": [{"type": t, "uri": u} for t, u in services]}
        self._put(f"/v1/numbers/{number}", body)
        if key is not None:
            self._put(f"/v1/numbers/{number}/key", {"ed25519": key})

    def _put(self, path, body):
        req = urllib.request.Request(
            self.registrar + path,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Authorization": f"Bearer {self.registrar_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert 200 <= r.status < 300, r.status


@pytest.fixture(scope="session")
def chain():
    return Chain()
