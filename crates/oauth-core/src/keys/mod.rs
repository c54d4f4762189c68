//! Provider keys (owned by the keys work).
