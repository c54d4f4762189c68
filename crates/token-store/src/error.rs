//! Mapping of driver and pool failures onto [`StoreError`].

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use oauth_core::storage::StoreError;

/// Failure inside a unit of database work. Transactions need an error type
/// that diesel errors convert into (to roll back on `?`), and `StoreError`
/// lives in another crate, so this local type carries both.
#[derive(Debug)]
pub(crate) enum Fail {
    Db(DieselError),
    Store(StoreError),
}

impl From<DieselError> for Fail {
    fn from(e: DieselError) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Db(e) => from_diesel(e),
            Fail::Store(e) => e,
        }
    }
}

/// Unique violations become `Conflict`; a lost or busy database becomes
/// `Unavailable` (callers answer `temporarily_unavailable`); anything else is
/// `Backend`.
pub(crate) fn from_diesel(e: DieselError) -> StoreError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => StoreError::Conflict,
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            info,
        ) => StoreError::Unavailable(one_line(info.message())),
        // SQLite reports an exhausted busy_timeout as a plain error; it is
        // contention, not a broken query.
        DieselError::DatabaseError(_, info) if is_busy(info.message()) => {
            StoreError::Unavailable(one_line(info.message()))
        }
        DieselError::BrokenTransactionManager => {
            StoreError::Unavailable("connection left in a broken transaction state".to_owned())
        }
        other => StoreError::Backend(one_line(&other.to_string())),
    }
}

fn is_busy(msg: &str) -> bool {
    msg.starts_with("database is locked") || msg.starts_with("database is busy")
}

/// libpq messages span several lines with tabs; log lines and startup
/// errors should be one line.
pub(crate) fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_driver_messages_become_one_line() {
        let m = "connection to server failed: Connection refused\n\tIs the server running?\n";
        assert_eq!(
            one_line(m),
            "connection to server failed: Connection refused Is the server running?"
        );
    }

    #[test]
    fn not_found_is_a_backend_error_not_a_conflict() {
        assert!(matches!(
            from_diesel(DieselError::NotFound),
            StoreError::Backend(_)
        ));
    }
}
