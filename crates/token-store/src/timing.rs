//! Database latency for the operator (docs/operations.md §2): every query
//! the store runs, timed from its submission to its result, so waiting for
//! a pooled connection (on SQLite, for the one writer and its group
//! commit) counts, as it does for the request that waits.
//!
//! The `operation` label is the repository module that submitted the
//! query, one per storage contract, taken from the caller's source
//! location (`#[track_caller]`): a fixed set known at compile time
//! ([`OPERATIONS`]), never anything a client sent.

use std::time::Instant;

/// Query latency, by `operation` ([`OPERATIONS`]) and `access` (`read`,
/// `write`).
pub const DB_QUERY_DURATION: &str = "strongroom_db_query_duration_seconds";

/// The `operation` label values: the repository modules (`src/repo/`),
/// `maintenance` for the store's own work (purges, the replay log), and
/// `other` for anything else.
pub const OPERATIONS: &[&str] = &[
    "authorize",
    "ciba",
    "clients",
    "codes",
    "grants",
    "health",
    "keys",
    "admin",
    "par",
    "replay",
    "sessions",
    "token_reads",
    "tokens",
    "maintenance",
    "other",
];

/// One query being timed.
pub(crate) struct Timer {
    operation: &'static str,
    access: &'static str,
    started: Instant,
}

impl Timer {
    /// Starts timing a query of `access` kind for the (first untracked)
    /// caller's module.
    #[track_caller]
    pub(crate) fn start(access: &'static str) -> Timer {
        Timer {
            operation: operation_of(std::panic::Location::caller().file()),
            access,
            started: Instant::now(),
        }
    }

    /// Records the query's latency; a query whose caller went away before
    /// its result is not recorded.
    pub(crate) fn stop(self) {
        metrics::histogram!(DB_QUERY_DURATION, "operation" => self.operation, "access" => self.access)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// The [`OPERATIONS`] value of a source file.
fn operation_of(file: &str) -> &'static str {
    let stem = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    match stem {
        "lib" | "writer" | "seen" => "maintenance",
        _ => OPERATIONS
            .iter()
            .find(|o| **o == stem)
            .copied()
            .unwrap_or("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_repository_module_is_an_operation() {
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/src/repo");
        let mut seen = 0;
        for entry in std::fs::read_dir(repo).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if stem == "mod" {
                continue;
            }
            seen += 1;
            assert!(
                OPERATIONS.contains(&stem.as_str()),
                "{stem} is not in OPERATIONS"
            );
            assert_eq!(operation_of(path.to_str().unwrap()), stem);
        }
        assert!(seen >= 10);
        assert_eq!(operation_of("crates/token-store/src/lib.rs"), "maintenance");
        assert_eq!(operation_of("somewhere/else.rs"), "other");
    }

    #[test]
    fn the_caller_names_the_operation() {
        let t = Timer::start("read");
        // This file is none of the repository modules.
        assert_eq!(t.operation, "other");
        assert_eq!(t.access, "read");
    }
}
