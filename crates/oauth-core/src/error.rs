//! OAuth errors.
