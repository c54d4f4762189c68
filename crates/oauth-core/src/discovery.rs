//! Discovery metadata.
