"""STIR/SHAKEN (sans-IO): `verifier.Verifier` (RFC 8224 verification; `NeedCertificate` when an x5u
is not cached), `signer.Signer` (attestation for calls the PBX sends out), `passport`, `certs`, `result`,
`schema.StirConfig`.
"""
