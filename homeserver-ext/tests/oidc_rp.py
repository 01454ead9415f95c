"""An independent relying party's checks of tincan-ext's OpenID provider, with joserfc (the JOSE library under
Synapse's authlib): the discovery document's required fields, the JWKS, and one ID token's signature (key
chosen by `kid` from the JWKS), `iss`, `aud`, `sub`, `exp`, `iat` and `nonce`.

    python oidc_rp.py ISSUER CLIENT_ID NONCE NOW ID_TOKEN

Prints {"header": …, "claims": …} and exits 0 when every check passes; prints the reason and exits 1 when the
token is refused, 2 when discovery is not conformant.
"""

import json
import sys
import urllib.request

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def main():
    issuer, client_id, nonce, now, id_token = sys.argv[1:6]
    meta = get(issuer.rstrip("/") + "/.well-known/openid-configuration")
    # OpenID Connect Discovery 1.0 §3: REQUIRED fields, and the issuer exactly as configured.
    required = ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported",
                "subject_types_supported", "id_token_signing_alg_values_supported"]
    missing = [k for k in required if k not in meta]
    if missing or meta["issuer"] != issuer or "code" not in meta["response_types_supported"]:
        print(f"discovery not conformant: missing {missing}, issuer {meta.get('issuer')!r}", file=sys.stderr)
        sys.exit(2)
    keys = KeySet.import_key_set(get(meta["jwks_uri"]))
    try:
        token = jwt.decode(id_token, keys, algorithms=meta["id_token_signing_alg_values_supported"])
        claims = jwt.JWTClaimsRegistry(
            now=int(now),
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        claims.validate(token.claims)
    except JoseError as e:
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"header": token.header, "claims": token.claims}))


if __name__ == "__main__":
    main()
