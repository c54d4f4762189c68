//! Pushed authorization requests (RFC 9126) — being written.
