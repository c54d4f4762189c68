//! Client certificates (owned by the TLS work).
