//! What the admin API (issue 26) writes and reads: its append-only audit
//! log, the conditional client writes behind `If-Match`, and the version
//! counter of admin-owned settings.
//!
//! Every admin change commits with its audit row, in one transaction: the
//! conditional client writes here take the row themselves, and any other
//! write carries one with [`Store::carrying_audit`]. A refused call (a stale
//! `If-Match`, a failed validation) changes nothing and is appended on its
//! own with [`Store::append_audit`].
//!
//! The conditions compare the whole stored registration (metadata text,
//! secret hash, origin, `updated_at`), not a version column, so the `ETag`
//! the API derives from those fields is exact and no schema change of the
//! `clients` table was needed. On PostgreSQL the conditional `UPDATE` takes
//! the row lock, so two writers with the same `If-Match` serialise and the
//! second finds its condition false.

use diesel::prelude::*;
use oauth_core::storage::{ClientRecord, StoreResult};

use crate::Store;
use crate::conn::AnyConnection;
use crate::db::with_conn;
use crate::error::Fail;
use crate::models::ClientRow;
use crate::schema::{
    admin_audit as au, admin_settings as st, clients as cl, settings_version as sv,
};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = au, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AuditEntry {
    /// Time-ordered (milliseconds, then randomness): the paging cursor.
    pub audit_id: String,
    pub at_ms: i64,
    /// The token's subject (or `anonymous` when no token was valid).
    pub actor: String,
    /// The client the token was issued to, if any.
    pub actor_client: Option<String>,
    /// The peer address of the call.
    pub source: String,
    /// `clients.create`, `keys.rotate`, … or the route for a refused call.
    pub action: String,
    pub resource: String,
    pub resource_id: Option<String>,
    /// The HTTP status the call was answered with.
    pub status: i64,
    /// JSON: before / after (secrets redacted) or the reason of a refusal.
    pub detail: String,
}

/// Which audit lines to list, oldest first after `after`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// The cursor: the last `audit_id` of the previous page.
    pub after: Option<String>,
    pub limit: i64,
}

/// A client write under a condition.
#[derive(Debug, Clone)]
pub enum ClientChange {
    /// Insert; refused when the `client_id` exists.
    Create(ClientRecord),
    /// Replace `expected` (exactly as read) by `new`.
    Replace {
        expected: ClientRecord,
        new: ClientRecord,
    },
    /// Delete `expected` (exactly as read) with its grants, tokens and
    /// pending requests, as `delete_client` does.
    Delete { expected: ClientRecord, now: i64 },
}

/// How a [`ClientChange`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Written with its audit row.
    Done,
    /// The stored registration is no longer the expected one (or is gone);
    /// nothing written.
    Stale,
    /// A create whose `client_id` is taken; nothing written.
    Exists,
}

impl Store {
    /// Appends `entry` on its own (a refused call).
    pub async fn append_audit(&self, entry: AuditEntry) -> StoreResult<()> {
        self.run_write(move |conn| insert_audit(conn, &entry)).await
    }

    /// A handle whose next write also appends `entry` and bumps the
    /// settings version, in the same transaction; when that write fails,
    /// neither lands.
    pub fn carrying_audit(&self, entry: AuditEntry) -> Store {
        let mut handle = self.clone();
        handle.audit = Some(std::sync::Arc::new(std::sync::Mutex::new(Some(entry))));
        handle
    }

    /// The audit lines `filter` selects, oldest first, at most
    /// `filter.limit`.
    pub async fn list_audit(&self, filter: AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        self.run(move |conn| {
            let rows = with_conn!(conn, c => {
                let mut q = au::table.into_boxed();
                if let Some(a) = &filter.actor {
                    q = q.filter(au::actor.eq(a.clone()));
                }
                if let Some(r) = &filter.resource {
                    q = q.filter(au::resource.eq(r.clone()));
                }
                if let Some(r) = &filter.resource_id {
                    q = q.filter(au::resource_id.eq(r.clone()));
                }
                if let Some(t) = filter.since_ms {
                    q = q.filter(au::at_ms.ge(t));
                }
                if let Some(t) = filter.until_ms {
                    q = q.filter(au::at_ms.lt(t));
                }
                if let Some(after) = &filter.after {
                    q = q.filter(au::audit_id.gt(after.clone()));
                }
                q.order(au::audit_id)
                    .limit(filter.limit)
                    .select(AuditEntry::as_select())
                    .load(c)?
            });
            Ok(rows)
        })
        .await
    }

    /// Registrations in `client_id` order after the cursor `after`, at most
    /// `limit`, of `origin` when given.
    pub async fn list_clients_page(
        &self,
        after: Option<String>,
        origin: Option<String>,
        software_id: Option<String>,
        limit: i64,
    ) -> StoreResult<Vec<ClientRecord>> {
        self.run(move |conn| {
            let rows: Vec<ClientRow> = with_conn!(conn, c => {
                let mut q = cl::table.into_boxed();
                if let Some(a) = &after {
                    q = q.filter(cl::client_id.gt(a.clone()));
                }
                if let Some(o) = &origin {
                    q = q.filter(cl::origin.eq(o.clone()));
                }
                if let Some(s) = &software_id {
                    q = q.filter(cl::software_id.eq(s.clone()));
                }
                q.order(cl::client_id)
                    .limit(limit)
                    .select(ClientRow::as_select())
                    .load(c)?
            });
            Ok(rows.into_iter().map(ClientRecord::from).collect())
        })
        .await
    }

    /// Applies `change` and appends `audit` (and bumps the settings
    /// version) in one transaction, when its condition holds.
    pub async fn change_client(
        &self,
        change: ClientChange,
        audit: AuditEntry,
    ) -> StoreResult<ChangeOutcome> {
        self.run_write_then(
            move |conn| {
                crate::db::savepoint(conn, |conn| {
                    let outcome = apply(conn, change)?;
                    if outcome == ChangeOutcome::Done {
                        insert_audit(conn, &audit)?;
                        bump_version(conn)?;
                    }
                    Ok(outcome)
                })
            },
            self.registrations_changed(),
        )
        .await
    }

    /// The admin-owned setting `name` (a JSON document) and its version.
    pub async fn get_setting(&self, name: &str) -> StoreResult<Option<(String, i64)>> {
        let name = name.to_owned();
        self.run(move |conn| {
            let row: Option<(String, i64)> = with_conn!(conn, c => st::table
                .find(&name)
                .select((st::value, st::version))
                .get_result(c)
                .optional()?);
            Ok(row)
        })
        .await
    }

    /// Writes the setting `name` if its version is still `expected`
    /// (`None`: it must not exist yet), with `audit` and a bump of the
    /// settings version, in one transaction.
    pub async fn change_setting(
        &self,
        name: &str,
        expected: Option<i64>,
        value: String,
        audit: AuditEntry,
        now: i64,
    ) -> StoreResult<ChangeOutcome> {
        let name = name.to_owned();
        self.run_write(move |conn| {
            crate::db::savepoint(conn, |conn| {
                let n = match expected {
                    None => with_conn!(conn, c => diesel::insert_into(st::table)
                        .values((
                            st::name.eq(&name),
                            st::value.eq(&value),
                            st::version.eq(1),
                            st::updated_at.eq(now),
                        ))
                        .on_conflict_do_nothing()
                        .execute(c)?),
                    Some(v) => with_conn!(conn, c => diesel::update(
                        st::table.filter(st::name.eq(&name)).filter(st::version.eq(v)),
                    )
                    .set((
                        st::value.eq(&value),
                        st::version.eq(v + 1),
                        st::updated_at.eq(now),
                    ))
                    .execute(c)?),
                };
                if n != 1 {
                    return Ok(ChangeOutcome::Stale);
                }
                insert_audit(conn, &audit)?;
                bump_version(conn)?;
                Ok(ChangeOutcome::Done)
            })
        })
        .await
    }

    /// Removes the setting `name` if its version is still `expected`, with
    /// `audit` and a bump of the settings version, in one transaction.
    pub async fn delete_setting(
        &self,
        name: &str,
        expected: i64,
        audit: AuditEntry,
    ) -> StoreResult<ChangeOutcome> {
        let name = name.to_owned();
        self.run_write(move |conn| {
            crate::db::savepoint(conn, |conn| {
                let n = with_conn!(conn, c => diesel::delete(
                    st::table.filter(st::name.eq(&name)).filter(st::version.eq(expected)),
                )
                .execute(c)?);
                if n != 1 {
                    return Ok(ChangeOutcome::Stale);
                }
                insert_audit(conn, &audit)?;
                bump_version(conn)?;
                Ok(ChangeOutcome::Done)
            })
        })
        .await
    }

    /// The version of admin-owned settings: bumped by every admin change,
    /// polled by every instance.
    pub async fn settings_version(&self) -> StoreResult<i64> {
        self.run(|conn| {
            let v: Option<i64> = with_conn!(conn, c => sv::table
                .find("admin")
                .select(sv::version)
                .get_result(c)
                .optional()?);
            Ok(v.unwrap_or(0))
        })
        .await
    }
}

/// The `clients` row exactly as `$expected` was read.
macro_rules! unchanged {
    ($expected:expr) => {
        cl::table
            .filter(cl::client_id.eq($expected.client_id.clone()))
            .filter(cl::metadata.eq($expected.metadata.clone()))
            .filter(cl::origin.eq($expected.origin.clone()))
            .filter(cl::updated_at.eq($expected.updated_at))
            .filter(
                diesel::dsl::sql::<diesel::sql_types::Text>("COALESCE(secret_hash, '')")
                    .eq($expected.secret_hash.clone().unwrap_or_default()),
            )
    };
}

fn apply(conn: &mut AnyConnection, change: ClientChange) -> Result<ChangeOutcome, Fail> {
    match change {
        ClientChange::Create(rec) => {
            let row = ClientRow::from(rec);
            let n = with_conn!(conn, c => diesel::insert_into(cl::table)
                .values(&row)
                .on_conflict_do_nothing()
                .execute(c)?);
            Ok(if n == 1 {
                ChangeOutcome::Done
            } else {
                ChangeOutcome::Exists
            })
        }
        ClientChange::Replace { expected, new } => {
            let row = ClientRow::from(new);
            let n = with_conn!(conn, c => diesel::update(unchanged!(expected))
                .set(&row)
                .execute(c)?);
            Ok(if n == 1 {
                ChangeOutcome::Done
            } else {
                ChangeOutcome::Stale
            })
        }
        ClientChange::Delete { expected, now } => {
            // Touch the row under the condition first: it takes the row
            // lock on PostgreSQL and tells whether the condition holds.
            let n = with_conn!(conn, c => diesel::update(unchanged!(expected))
                .set(cl::updated_at.eq(expected.updated_at))
                .execute(c)?);
            if n != 1 {
                return Ok(ChangeOutcome::Stale);
            }
            crate::repo::clients::delete_rows(conn, &expected.client_id, now)?;
            Ok(ChangeOutcome::Done)
        }
    }
}

pub(crate) fn insert_audit(conn: &mut AnyConnection, entry: &AuditEntry) -> Result<(), Fail> {
    with_conn!(conn, c => diesel::insert_into(au::table).values(entry).execute(c)?);
    Ok(())
}

pub(crate) fn bump_version(conn: &mut AnyConnection) -> Result<(), Fail> {
    with_conn!(conn, c => diesel::update(sv::table.find("admin"))
        .set(sv::version.eq(sv::version + 1))
        .execute(c)?);
    Ok(())
}
