"""Micro-benchmark: CPU µs per STI-VS verification with the certificate cached (issue 3 target: <= 150 µs).

Not a test. Each iteration verifies a fresh, distinct PASSporT (new signature, so the replay table grows as
in production); tokens are signed before the timed loop. Run: .venv/bin/python benchmarks/stir_micro.py [N]
"""

from __future__ import annotations

import sys
import time


sys.path.insert(0, ".")

from edge.stir.certs import TrustStore  # noqa: E402
from edge.stir.result import StirStatus  # noqa: E402
from edge.stir.signer import Signer  # noqa: E402
from edge.stir.verifier import Verifier  # noqa: E402
from tests.stir.pki import build_pki, key_pem, pem  # noqa: E402

X5U = "https://cert.example.net/sti/leaf.pem"


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    pki = build_pki()
    signer = Signer(key_pem(pki.leaf_key), X5U)
    now = time.time()
    values = [signer.sign("12025550123", ["12025550199"], "A", f"o-{i}", int(now)) for i in range(n)]
    verifier = Verifier(TrustStore.from_blobs([pem(pki.root)]))
    verifier.certificate_fetched(X5U, pki.bundle, "max-age=3600", "", now)
    start = time.process_time()
    for i, v in enumerate(values):
        res = verifier.verify([v], "12025550123", "12025550199", f"call-{i}", now)
        assert res.status is StirStatus.PASSED, res
    cpu = time.process_time() - start
    sys.stdout.write(f"stir verify, cert cached: {n} verifications, {cpu / n * 1e6:.1f} µs CPU each\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
