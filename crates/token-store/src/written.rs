//! The hot conditional writes, written out as SQL so that each connection
//! prepares them once.
//!
//! diesel never caches the prepared statement of an `UPDATE` or of an
//! `ON CONFLICT … DO UPDATE` (a changeset with optional fields can take many
//! shapes; its `statement_cache` module says so), so SQLite parsed and
//! planned these on every request: 1.9 % of the server's CPU in a profile of
//! session flows. A wrapper cannot opt back in, because diesel asks the
//! borrowed query whether it is cacheable and the blanket impl for `&T`
//! walks the inner statement again. Each statement here is its own type
//! with a fixed text, so diesel caches it by type (`QueryId`), as it does
//! its own `SELECT`s and `INSERT`s.
//!
//! The text is the same on both backends; diesel writes the placeholders
//! (`?` or `$n`). The store's tests run each statement on both.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text};
use diesel::{QueryResult, RunQueryDsl};

/// A backend with the two SQL types these statements bind (each use also
/// asks that `str` and `i64` serialise to them, which a trait cannot carry).
pub(crate) trait Binds: Backend + HasSqlType<Text> + HasSqlType<BigInt> {}

impl<DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>> Binds for DB {}

/// Makes a statement struct (one lifetime) runnable and cached by type:
/// `QueryId`, `RunQueryDsl`, and its `QueryFragment` for every backend that
/// binds text and 64-bit integers, with `$body` writing the SQL through
/// `$out` from the fields of `$s`.
macro_rules! statement {
    ($name:ident, |$s:ident, $out:ident| $body:block) => {
        impl QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl<Conn> RunQueryDsl<Conn> for $name<'_> {}

        impl<DB> QueryFragment<DB> for $name<'_>
        where
            DB: Binds,
            str: ToSql<Text, DB>,
            i64: ToSql<BigInt, DB>,
        {
            fn walk_ast<'b>(&'b self, mut $out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
                let $s = self;
                $body
            }
        }
    };
}

/// Records `value` of `kind` as used until `expires_at`, unless it is
/// recorded already and has not expired at `now`: one row affected when
/// recorded (new, or taking over an expired entry), none for a replay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordReplay<'a> {
    pub(crate) kind: &'a str,
    pub(crate) value: &'a str,
    pub(crate) expires_at: i64,
    pub(crate) now: i64,
}
statement!(RecordReplay, |s, out| {
    out.push_sql("INSERT INTO replay_cache (kind, value, expires_at) VALUES (");
    out.push_bind_param::<Text, str>(s.kind)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, str>(s.value)?;
    out.push_sql(", ");
    out.push_bind_param::<BigInt, i64>(&s.expires_at)?;
    out.push_sql(
        ") ON CONFLICT (kind, value) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE replay_cache.expires_at <= ",
    );
    out.push_bind_param::<BigInt, i64>(&s.now)
});

/// Stores an interaction, replacing the one with the same id (its state
/// moves on as the journey does).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PutInteraction<'a> {
    pub(crate) interaction_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) state: &'a str,
    pub(crate) expires_at: i64,
}
statement!(PutInteraction, |s, out| {
    out.push_sql(
        "INSERT INTO interactions (interaction_id, client_id, state, expires_at) VALUES (",
    );
    out.push_bind_param::<Text, str>(s.interaction_id)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, str>(s.client_id)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, str>(s.state)?;
    out.push_sql(", ");
    out.push_bind_param::<BigInt, i64>(&s.expires_at)?;
    out.push_sql(
        ") ON CONFLICT (interaction_id) DO UPDATE SET client_id = excluded.client_id, \
             state = excluded.state, expires_at = excluded.expires_at",
    );
    Ok(())
});

/// Marks the pushed request (unspent, unexpired at `now`) spent: one row
/// affected for the single winner, none otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpendPushedRequest<'a> {
    pub(crate) request_uri_hash: &'a str,
    pub(crate) now: i64,
}
statement!(SpendPushedRequest, |s, out| {
    spend(
        &mut out,
        "pushed_requests",
        "request_uri_hash",
        s.request_uri_hash,
        &s.now,
    )
});

/// Marks the authorization code (unspent, unexpired at `now`) spent: one
/// row affected for the single winner, none otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpendCode<'a> {
    pub(crate) code_hash: &'a str,
    pub(crate) now: i64,
}
statement!(SpendCode, |s, out| {
    spend(
        &mut out,
        "authorization_codes",
        "code_hash",
        s.code_hash,
        &s.now,
    )
});

/// `UPDATE {table} SET consumed_at = now WHERE {key} = ? AND consumed_at IS
/// NULL AND expires_at > now`. Each caller is its own type: diesel caches
/// by type, so two texts must never share one.
fn spend<'b, DB>(
    out: &mut AstPass<'_, 'b, DB>,
    table: &str,
    key_column: &str,
    key: &'b str,
    now: &'b i64,
) -> QueryResult<()>
where
    DB: Binds,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    out.push_sql("UPDATE ");
    out.push_sql(table);
    out.push_sql(" SET consumed_at = ");
    out.push_bind_param::<BigInt, i64>(now)?;
    out.push_sql(" WHERE ");
    out.push_sql(key_column);
    out.push_sql(" = ");
    out.push_bind_param::<Text, str>(key)?;
    out.push_sql(" AND consumed_at IS NULL AND expires_at > ");
    out.push_bind_param::<BigInt, i64>(now)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
    use diesel::{Connection, SqliteConnection};

    use super::*;

    /// An in-memory database with the store's own schema (its SQLite
    /// migrations, so the statements meet the real columns and constraints),
    /// recording the SQL of every statement diesel puts in its cache.
    fn connection() -> (SqliteConnection, Arc<Mutex<Vec<String>>>) {
        use diesel_migrations::MigrationHarness;
        let mut c = SqliteConnection::establish(":memory:").unwrap();
        c.run_pending_migrations(crate::SQLITE_MIGRATIONS).unwrap();
        c.batch_execute(
            "PRAGMA foreign_keys = ON;
             INSERT INTO pushed_requests VALUES ('r1', 'tpp', '{}', 100, 0, NULL), \
                 ('r2', 'tpp', '{}', 10, 0, NULL);
             INSERT INTO grants VALUES ('g1', 'tpp', 'u1', 'openid', NULL, '{}', 0, NULL);
             INSERT INTO authorization_codes VALUES ('c1', 'g1', 'tpp', '{}', 100, 0, NULL);",
        )
        .unwrap();
        let cached = Arc::new(Mutex::new(Vec::new()));
        let log = cached.clone();
        let hook = move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                log.lock().unwrap().push(sql.to_owned());
            }
        };
        c.set_instrumentation(Box::new(hook) as Box<dyn Instrumentation>);
        (c, cached)
    }

    fn record(c: &mut SqliteConnection, value: &str, expires_at: i64, now: i64) -> usize {
        RecordReplay {
            kind: "dpop_proof",
            value,
            expires_at,
            now,
        }
        .execute(c)
        .unwrap()
    }

    #[test]
    fn a_replay_changes_no_row_and_an_expired_entry_is_taken_over() {
        let (mut c, _) = connection();
        assert_eq!(record(&mut c, "j1", 20, 10), 1);
        assert_eq!(record(&mut c, "j1", 30, 15), 0, "live entry: a replay");
        assert_eq!(record(&mut c, "j1", 30, 20), 1, "expired at 20: taken over");
        assert_eq!(
            record(&mut c, "j1", 40, 29),
            0,
            "the takeover's expiry holds"
        );
        let other = RecordReplay {
            kind: "client_assertion",
            value: "j1",
            expires_at: 40,
            now: 29,
        };
        assert_eq!(other.execute(&mut c).unwrap(), 1, "kinds are apart");
    }

    #[test]
    fn a_spend_has_one_winner_and_skips_expired_rows() {
        let (mut c, _) = connection();
        let par = |h: &'static str, now| SpendPushedRequest {
            request_uri_hash: h,
            now,
        };
        assert_eq!(par("r1", 50).execute(&mut c).unwrap(), 1);
        assert_eq!(par("r1", 51).execute(&mut c).unwrap(), 0, "spent");
        assert_eq!(par("r2", 10).execute(&mut c).unwrap(), 0, "expired");
        assert_eq!(par("r9", 10).execute(&mut c).unwrap(), 0, "unknown");
        let code = |now| SpendCode {
            code_hash: "c1",
            now,
        };
        assert_eq!(code(100).execute(&mut c).unwrap(), 0, "expired at 100");
        assert_eq!(code(99).execute(&mut c).unwrap(), 1);
        assert_eq!(code(99).execute(&mut c).unwrap(), 0, "spent");
    }

    #[test]
    fn an_interaction_is_stored_and_then_replaced() {
        let (mut c, _) = connection();
        let put = |state: &'static str, expires_at| PutInteraction {
            interaction_id: "i1",
            client_id: "tpp",
            state,
            expires_at,
        };
        assert_eq!(put("login", 60).execute(&mut c).unwrap(), 1);
        assert_eq!(put("consent", 90).execute(&mut c).unwrap(), 1);
        let (state, expires_at): (String, i64) = diesel::sql_query(
            "SELECT state, expires_at FROM interactions WHERE interaction_id = 'i1'",
        )
        .get_result::<Stored>(&mut c)
        .map(|r| (r.state, r.expires_at))
        .unwrap();
        assert_eq!((state.as_str(), expires_at), ("consent", 90));
    }

    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = BigInt)]
        expires_at: i64,
    }

    /// The point of this module: each statement is prepared once per
    /// connection, however often it runs, and the two spends (one type
    /// each) never share a prepared statement.
    #[test]
    fn each_statement_is_prepared_once_per_connection() {
        let (mut c, cached) = connection();
        for i in 0..3 {
            record(&mut c, &format!("j{i}"), 20, 10);
            SpendPushedRequest {
                request_uri_hash: "r1",
                now: 50,
            }
            .execute(&mut c)
            .unwrap();
            SpendCode {
                code_hash: "c1",
                now: 50,
            }
            .execute(&mut c)
            .unwrap();
            PutInteraction {
                interaction_id: "i1",
                client_id: "tpp",
                state: "{}",
                expires_at: 60,
            }
            .execute(&mut c)
            .unwrap();
        }
        let cached = cached.lock().unwrap();
        assert_eq!(cached.len(), 4, "{cached:?}");
        assert!(
            cached[3].starts_with("INSERT INTO interactions"),
            "{cached:?}"
        );
        assert!(
            cached[0].starts_with("INSERT INTO replay_cache"),
            "{cached:?}"
        );
        assert!(
            cached[1].starts_with("UPDATE pushed_requests"),
            "{cached:?}"
        );
        assert!(
            cached[2].starts_with("UPDATE authorization_codes"),
            "{cached:?}"
        );
    }
}
