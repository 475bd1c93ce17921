#!/usr/bin/env python3
"""Writes the fuzz seed corpora, once: fuzz/corpus/<target>/. Standard library only.

    python3 fuzz/make_seeds.py
    python3 fuzz/make_seeds.py --cases BIN   # BIN: the built extract_and_decide fuzz target

Seeds come from the committed fixtures (tests/fixtures/{tokens,jwks}.json), the shipped
configuration examples (filter-config/), a few real JWKS documents
(tests/data/real-jwks/), and hand-made near misses. Nothing is random, so running it
again gives the same files. libFuzzer adds what it finds to these directories when run
without a separate output corpus; only these seeds are committed (see fuzz/.gitignore).

`--cases` runs each extract_and_decide seed through the fuzz target with
JWT_EDGE_FUZZ_CASE_OUT set and collects the requests it decoded into
fuzz/seed-cases/extract_and_decide.json, which `cargo test` replays (tests/fuzz_regressions.rs)
because the test cannot decode `arbitrary` input itself. `make fuzz-seeds` does both steps.
"""
import base64, json, os, pathlib, shutil, struct, subprocess, sys, tempfile

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"
REAL_JWKS = ROOT / "tests" / "data" / "real-jwks"

FIX = json.loads((ROOT / "tests" / "fixtures" / "tokens.json").read_text())
TOKENS = FIX["tokens"]
NAMES = list(TOKENS)
JWKS = json.loads((ROOT / "tests" / "fixtures" / "jwks.json").read_text())


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def seg(token: str, n: int) -> str:
    return token.split(".")[n]


def write(target: str, name: str, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def token_seeds():
    for name, t in TOKENS.items():
        write("token_parse", name, t)
    rs, es = TOKENS["rs256"], TOKENS["es256"]
    claims = b64(json.dumps({"iss": "https://issuer.test", "aud": "api", "sub": "alice",
                             "exp": 4102444800}).encode())

    def h(raw: bytes) -> str:
        return b64(raw)

    crit = h(b'{"alg":"RS256","kid":"rsa-1","crit":["exp"],"exp":1}')
    dup_alg = h(b'{"alg":"RS256","alg":"HS256"}')
    alg_lower = h(b'{"alg":"rs256","kid":"rsa-1"}')
    alg_none = h(b'{"alg":"none"}')
    kid_null = h(b'{"alg":"ES256","kid":null}')
    kid_number = h(b'{"alg":"ES256","kid":7}')
    deep = h(b'{"alg":"RS256","x":' + b"[" * 200 + b"]" * 200 + b"}")
    bad_utf8 = h(b'{"sub":"\xff"}')
    hs_no_kid = h(b'{"alg":"HS256"}')
    hs = TOKENS["hs256_local"]
    near = {
        # Segments of one token with another's signature (alg/key confusion shapes).
        "splice_rs_header_es_sig": f"{seg(rs, 0)}.{seg(rs, 1)}.{seg(es, 2)}",
        "splice_es_header_rs_sig": f"{seg(es, 0)}.{seg(es, 1)}.{seg(rs, 2)}",
        "jwe_five_segments": f"{seg(rs, 0)}.{seg(rs, 1)}.{seg(rs, 2)}.AA.AA",
        "empty_signature": f"{seg(rs, 0)}.{seg(rs, 1)}.",
        "padded_signature": rs + "==",
        "std_alphabet": rs.replace("-", "+").replace("_", "/"),
        "crit": f"{crit}.{claims}.{seg(rs, 2)}",
        "dup_alg": f"{dup_alg}.{claims}.{seg(rs, 2)}",
        "alg_lowercase": f"{alg_lower}.{claims}.{seg(rs, 2)}",
        "alg_none_empty_sig": f"{alg_none}.{claims}.",
        "kid_null": f"{kid_null}.{claims}.{seg(es, 2)}",
        "kid_number": f"{kid_number}.{claims}.{seg(es, 2)}",
        "deep_json": f"{deep}.{claims}.AA",
        "payload_not_object": f"{seg(rs, 0)}.{h(b'[1,2]')}.{seg(rs, 2)}",
        "payload_bad_utf8": f"{seg(rs, 0)}.{bad_utf8}.{seg(rs, 2)}",
        "ecdsa_zero_sig": f"{seg(es, 0)}.{seg(es, 1)}.{b64(bytes(64))}",
        "ecdsa_der_sig": f"{seg(es, 0)}.{seg(es, 1)}.{b64(bytes.fromhex('3006020101020101'))}",
        "eddsa_short_sig": f"{seg(TOKENS['eddsa'], 0)}.{seg(TOKENS['eddsa'], 1)}.{b64(bytes(63))}",
        "hs256_no_kid": f"{hs_no_kid}.{seg(hs, 1)}.{seg(hs, 2)}",
    }
    for name, t in near.items():
        write("token_parse", name, t)


def jwks_seeds():
    write("jwks_parse", "fixture_jwks", json.dumps(JWKS))
    for key in JWKS["keys"]:
        write("jwks_parse", "one_" + key["kid"], json.dumps({"keys": [key]}))
    rsa, ec = JWKS["keys"][0], JWKS["keys"][1]
    secret = FIX["hs256_secret_b64url"]
    variants = {
        "oct_hs256": {"keys": [{"kty": "oct", "kid": "hs-1", "k": secret, "alg": "HS256"}]},
        "oct_short": {"keys": [{"kty": "oct", "k": b64(b"short")}]},
        "rsa_alg_restricted": {"keys": [{**rsa, "alg": "PS256"}]},
        "rsa_use_enc": {"keys": [{**rsa, "use": "enc"}]},
        "rsa_e_one": {"keys": [{**rsa, "e": "AQ"}]},
        "rsa_e_three": {"keys": [{**rsa, "e": "Aw"}]},
        "rsa_leading_zero": {"keys": [{**rsa, "n": b64(b"\0" + base64.urlsafe_b64decode(rsa["n"] + "=="))}]},
        "rsa_1024": {"keys": [{**rsa, "n": rsa["n"][:171]}]},
        "ec_wrong_curve": {"keys": [{**ec, "crv": "P-384"}]},
        "ec_zero_point": {"keys": [{**ec, "x": b64(bytes(32)), "y": b64(bytes(32))}]},
        "okp_x25519": {"keys": [{"kty": "OKP", "crv": "X25519", "x": b64(bytes(32))}]},
        "okp_identity": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64(b"\1" + bytes(31))}]},
        "duplicate_kid": {"keys": [rsa, rsa]},
        "key_ops": {"keys": [{**rsa, "key_ops": ["verify"]}, {**ec, "key_ops": ["sign"]}]},
        "with_private": {"keys": [{**ec, "d": b64(bytes(32))}]},
        "keys_twice": '{"keys":[],"keys":[]}',
        "keys_not_array": {"keys": {"kty": "RSA"}},
        "entries_not_objects": {"keys": [1, "x", None, [], True]},
    }
    for name, doc in variants.items():
        write("jwks_parse", name, doc if isinstance(doc, str) else json.dumps(doc))
    for name in ["apple-jwks.json", "gitlab-jwks.json", "google-2022-jwks.json",
                 "facebook-jwks.json", "spiffe-bundle-jwks.json", "keycloak-jwks.json",
                 "docker-jwks.json", "thinktecture-2015-jwks.json", "auth0-samples-jwks.json",
                 "salesforce-2015-jwks.json", "google-openid-configuration.json"]:
        write("jwks_parse", "real_" + name.removesuffix(".json"), (REAL_JWKS / name).read_bytes())


def config_seeds():
    for sub in ["examples", "invalid"]:
        for f in sorted((ROOT / "filter-config" / sub).glob("*.json")):
            write("config_parse", f"{sub}_{f.stem}", f.read_bytes())


# --- extract_and_decide: the `Shape` prefix of fuzz/src/lib.rs, as arbitrary 1.x reads it ---
# An enum tag is a little-endian u32 v read as variant (v * count) >> 32; a bool is a byte & 1.

def tag(index: int, count: int) -> bytes:
    v = (index * (1 << 32) + count - 1) // count
    assert (v * count) >> 32 == index
    return struct.pack("<I", v)


KEYS = ["Ready", "Pending", "Unavailable"]
METHODS = ["Get", "Post", "Options", "Head"]
ROUTES = ["Public", "Strict", "Rsa", "Any", "All", "Optional", "Lenient", "Orders", "Mixed",
          "Debug", "Other", "Line"]
ROUTE_NAMES = ["None", "Docs", "User", "Unknown"]
PLACES = ["Authorization", "XToken", "XHsToken", "AccessTokenParam", "AccessTokenParamEncoded",
          "SessionCookie", "IdentityHeader", "RawHeader", "Nowhere"]
SCHEMES = ["Bearer", "LowerBearer", "BearerSpaces", "Bare", "Basic"]
SOURCES = ["Line", "Fixture", "Splice", "Edit"]


def place(p: str) -> bytes:
    """`Authorization` or `Authorization:Scheme`, or another place name."""
    name, _, scheme = p.partition(":")
    out = tag(PLACES.index(name), len(PLACES))
    if name == "Authorization":
        out += tag(SCHEMES.index(scheme or "Bearer"), len(SCHEMES))
    return out


def request(slots, lines, route="Rsa", keys="Ready", method="Get", route_name="None",
            refetch=False, cors=False) -> bytes:
    """slots: up to 4 place names, each fed by the next text line."""
    slots = list(slots) + ["Nowhere"] * (4 - len(slots))
    out = tag(KEYS.index(keys), 3) + bytes([refetch]) + tag(METHODS.index(method), 4)
    out += tag(ROUTES.index(route), len(ROUTES)) + tag(ROUTE_NAMES.index(route_name), 4)
    out += bytes([cors])
    for s in slots:
        out += place(s) + tag(SOURCES.index("Line"), len(SOURCES))
    return out + "\n".join(lines).encode()


def decide_seeds():
    routes = ["Rsa", "Strict", "Any", "Orders", "Other", "Lenient", "Optional"]
    for i, (name, t) in enumerate(TOKENS.items()):
        route = routes[i % len(routes)]
        method = "Post" if route == "Orders" else "Get"
        write("extract_and_decide", f"bearer_{name}",
              request(["Authorization"], [t], route=route, method=method))
    t = TOKENS
    cases = {
        "all_header_and_param": request(["Authorization", "AccessTokenParam"],
                                        [t["rs256"], t["es256"]], route="All"),
        "all_param_missing": request(["Authorization"], [t["rs256"]], route="All"),
        "any_hs": request(["XHsToken"], [t["hs256_local"]], route="Any"),
        "any_hs_confusion": request(["XHsToken"], [t["hs256_confusion"]], route="Any"),
        "mixed_strict_and_hs": request(["XToken", "XHsToken"], [t["rs256"], t["hs256_local"]],
                                       route="Mixed"),
        "strict_claims_sub": request(["XToken"], [t["claims"]], route="Strict"),
        "cookie": request(["SessionCookie"], [t["es384"]], route="Any"),
        "param_encoded": request(["AccessTokenParamEncoded"], [t["eddsa"]], route="Any"),
        "two_authorization": request(["Authorization", "Authorization:LowerBearer"],
                                     [t["rs256"], t["rs384"]]),
        "two_different_locations": request(["Authorization", "XToken"],
                                           [t["rs256"], t["forged_kid"]], route="Strict"),
        "cors_preflight": request([], [], method="Options", cors=True),
        "pending_unknown_kid": request(["Authorization"], [t["unknown_kid"]], keys="Pending",
                                       refetch=True),
        "unavailable": request(["Authorization"], [t["rs256"]], keys="Unavailable"),
        "route_docs": request(["Authorization"], [t["alg_none"]], route_name="Docs"),
        "route_user": request(["SessionCookie"], [t["ps256"]], route_name="User"),
        "raw_header": request(["RawHeader"], ["Authorization: Bearer " + t["rs512"]]),
        "spoofed_identity": request(["IdentityHeader"], ["admin"], route="Lenient"),
        "line_path_query": request(["Nowhere"], [f"/api?debug&access_token={t['rs256']}#frag"],
                                   route="Line"),
        "basic_scheme": request(["Authorization:Basic"], ["YWxhZGRpbjpvcGVuc2VzYW1l"]),
        "bearer_spaces": request(["Authorization:BearerSpaces"], [t["es256_no_kid"]]),
        "splice_lines": request(["Authorization"],
                                [f"{seg(t['rs256'], 0)}.{seg(t['rs256'], 1)}.{seg(t['forged_kid'], 2)}"]),
    }
    for name, data in cases.items():
        write("extract_and_decide", name, data)


def seed_cases(binary: str):
    """The request each extract_and_decide seed decodes to, as the fuzz target sees it."""
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "case.json"
        for seed in sorted((CORPUS / "extract_and_decide").iterdir()):
            out.unlink(missing_ok=True)
            env = {**os.environ, "JWT_EDGE_FUZZ_CASE_OUT": str(out)}
            subprocess.run([binary, str(seed)], env=env, check=True, capture_output=True)
            cases[seed.name] = json.loads(out.read_text())
    dest = FUZZ / "seed-cases" / "extract_and_decide.json"
    dest.parent.mkdir(exist_ok=True)
    lines = [f" {json.dumps(name)}: {json.dumps(case)}" for name, case in cases.items()]
    dest.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{len(cases)} cases -> {dest.relative_to(ROOT)}")


def main():
    if sys.argv[1:2] == ["--cases"]:
        seed_cases(sys.argv[2])
        return
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    token_seeds()
    jwks_seeds()
    config_seeds()
    decide_seeds()
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    print(f"{sum(1 for f in CORPUS.rglob('*') if f.is_file())} seeds, {total} bytes")


if __name__ == "__main__":
    main()
