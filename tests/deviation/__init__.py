"""The deviation server (a protocol.md speaker that differs from our C rows on purpose) and the client's tests
against it."""
