"""Writes the micro-benchmark's fixed inputs: fixtures/jwks.json and fixtures/tokens.json.

Run once, from the repository root, and commit the output (the tokens are re-signed on every
run, and PS256/ES* signatures are randomised, so re-running changes the files)::

    .venv/bin/python bench/micro/make_fixtures.py

The keys are the integration tests' committed fixture keys (rsa-1, ec-p256, ec-p384, ed-1 in
integration-tests/fixtures/); the tokens carry fixed claims (exp 2100-01-01). RS256 and PS256
use the same RSA-2048 key, whose JWK has no `alg`, so it verifies both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "integration-tests"))

from harness.keys import jwks, load_all  # noqa: E402
from harness.tokens import claims, mint  # noqa: E402

# alg -> kid of the signing key
ALGS = {"RS256": "rsa-1", "PS256": "rsa-1", "ES256": "ec-p256", "ES384": "ec-p384", "EdDSA": "ed-1"}


def main() -> None:
    keys = load_all()
    used = sorted(set(ALGS.values()))
    out = HERE / "fixtures"
    out.mkdir(exist_ok=True)
    (out / "jwks.json").write_text(json.dumps(jwks([keys[kid] for kid in used]), indent=2) + "\n")
    tokens = {alg: mint(keys[kid], claims(sub="bench"), alg=alg) for alg, kid in ALGS.items()}
    (out / "tokens.json").write_text(json.dumps(tokens, indent=2) + "\n")
    print(f"wrote {out}/jwks.json ({len(used)} keys) and tokens.json ({len(tokens)} tokens)")


if __name__ == "__main__":
    main()
