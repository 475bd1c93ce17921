"""Test harness for jwt-edge's Envoy integration tests: Envoy process, IdP, echo backends,
keys and hand-built tokens."""
