//! Migrations are backward compatible for one release (expand, then
//! contract; docs/operations.md §5): during a rolling upgrade the previous
//! release keeps reading and writing the schema the newest migration left,
//! no migration outside a `_contract` one destroys what it uses, and
//! instances starting together apply the migrations once.

use std::collections::BTreeMap;

use diesel::migration::{Migration, MigrationConnection as _, MigrationSource};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use oauth_core::storage::*;
use token_store::Store;

use super::*;

const SQLITE: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// A database of `backend` with no migration applied, removed when dropped.
fn unmigrated(backend: &str) -> (String, Cleanup) {
    match backend {
        "sqlite" => {
            let dir = std::env::temp_dir().join(unique_name("token-store-migrations"));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}", dir.join("strongroom.db").display());
            (url, Cleanup::Dir(dir))
        }
        _ => {
            let admin = admin_url();
            let name = unique_name("sr_mig");
            token_store::init_openssl();
            let mut conn = PgConnection::establish(&admin).unwrap();
            diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .unwrap();
            let url = url_for_database(&admin, &name);
            (
                url,
                Cleanup::PgDatabase {
                    admin_url: admin,
                    name,
                },
            )
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

/// A column as the database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    sql_type: String,
    not_null: bool,
    has_default: bool,
}

/// A plain connection, outside the store, for what the store never does:
/// partial migration runs and statements built from the schema itself.
enum Raw {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

impl Raw {
    fn open(url: &str) -> Raw {
        match url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut c = SqliteConnection::establish(path).unwrap();
                // As the store's connections have it.
                diesel::sql_query("PRAGMA foreign_keys = ON")
                    .execute(&mut c)
                    .unwrap();
                Raw::Sqlite(c)
            }
            None => Raw::Pg(PgConnection::establish(url).unwrap()),
        }
    }

    fn execute(&mut self, sql: &str) -> diesel::QueryResult<usize> {
        match self {
            Raw::Sqlite(c) => diesel::sql_query(sql).execute(c),
            Raw::Pg(c) => diesel::sql_query(sql).execute(c),
        }
    }

    /// The one text column `v` of each row of `sql`.
    fn texts(&mut self, sql: &str) -> Vec<String> {
        let rows: Vec<Text> = match self {
            Raw::Sqlite(c) => diesel::sql_query(sql).load(c),
            Raw::Pg(c) => diesel::sql_query(sql).load(c),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.v).collect()
    }

    /// This backend's migrations, oldest first.
    fn migration_names(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            Raw::Sqlite(_) => MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE)
                .unwrap()
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            Raw::Pg(_) => MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES)
                .unwrap()
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        };
        names.sort();
        names
    }

    /// Applies this backend's migrations `range` (by position, oldest
    /// first).
    fn run_migrations(&mut self, range: std::ops::Range<usize>) {
        fn sorted<DB: diesel::backend::Backend>(
            all: Vec<Box<dyn Migration<DB>>>,
            range: std::ops::Range<usize>,
        ) -> Vec<Box<dyn Migration<DB>>> {
            let mut all = all;
            all.sort_by_key(|m| m.name().to_string());
            all.into_iter()
                .skip(range.start)
                .take(range.end - range.start)
                .collect()
        }
        match self {
            Raw::Sqlite(c) => {
                let ms = sorted(MigrationSource::migrations(&SQLITE).unwrap(), range);
                c.setup().unwrap();
                c.run_migrations(&ms).unwrap();
            }
            Raw::Pg(c) => {
                let ms = sorted(MigrationSource::migrations(&POSTGRES).unwrap(), range);
                c.setup().unwrap();
                c.run_migrations(&ms).unwrap();
            }
        }
    }

    /// The schema's tables, diesel's own bookkeeping left out.
    fn tables(&mut self) -> Vec<String> {
        let sql = match self {
            Raw::Sqlite(_) => {
                "SELECT name AS v FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> '__diesel_schema_migrations' ORDER BY name"
            }
            Raw::Pg(_) => {
                "SELECT table_name::text AS v FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 AND table_name <> '__diesel_schema_migrations' ORDER BY table_name"
            }
        };
        self.texts(sql)
    }

    fn columns(&mut self, table: &str) -> Vec<Column> {
        let sql = match self {
            Raw::Sqlite(_) => format!(
                "SELECT name || '|' || upper(type) || '|' || (\"notnull\" <> 0) || '|' || \
                 (dflt_value IS NOT NULL) AS v FROM pragma_table_info('{table}') ORDER BY cid"
            ),
            Raw::Pg(_) => format!(
                "SELECT column_name || '|' || upper(data_type) || '|' || \
                 (is_nullable = 'NO')::int || '|' || (column_default IS NOT NULL)::int AS v \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}' \
                 ORDER BY ordinal_position"
            ),
        };
        self.texts(&sql)
            .into_iter()
            .map(|row| {
                let f: Vec<&str> = row.split('|').collect();
                Column {
                    name: f[0].to_owned(),
                    sql_type: f[1].to_owned(),
                    not_null: f[2] == "1",
                    has_default: f[3] == "1",
                }
            })
            .collect()
    }

    /// Each row of `table`'s `columns` as a list of SQL literals, sorted.
    fn literal_rows(&mut self, table: &str, columns: &[String]) -> Vec<String> {
        let quote = match self {
            Raw::Sqlite(_) => "quote",
            Raw::Pg(_) => "quote_nullable",
        };
        let list = columns
            .iter()
            .map(|c| format!("{quote}({c})"))
            .collect::<Vec<_>>()
            .join(" || ', ' || ");
        let mut rows = self.texts(&format!("SELECT {list} AS v FROM {table}"));
        rows.sort();
        rows
    }

    /// Runs `statements` in whatever order the foreign keys allow: each
    /// round runs those that succeed; every one must succeed in the end.
    fn run_in_key_order(&mut self, mut statements: Vec<String>) {
        while !statements.is_empty() {
            let before = statements.len();
            let mut last_error = String::new();
            statements.retain(|s| match self.execute(s) {
                Ok(_) => false,
                Err(e) => {
                    last_error = format!("{s}: {e}");
                    true
                }
            });
            assert!(statements.len() < before, "{last_error}");
        }
    }
}

/// Rows in every table the store writes, through the store, on the
/// current schema: realistic values for the copy to the older one.
async fn populate(s: &Store) {
    s.put_client(client("c1")).await.unwrap();
    s.put_grant_and_code(
        grant("g1", "c1", Some("consent-1")),
        code("code-1", "g1", "c1"),
        None,
    )
    .await
    .unwrap();
    s.put_tokens(vec![
        access("at-1", "c1", Some("g1")),
        refresh("rt-1", "c1", Some("g1")),
    ])
    .await
    .unwrap();
    s.put_pushed_request(pushed("par-1", "c1")).await.unwrap();
    s.put_interaction(interaction("i-1", "c1")).await.unwrap();
    s.put_ciba_request_with_delivery(ciba("ciba-1", "c1"), delivery("d-1", NOW * 1000))
        .await
        .unwrap();
    s.put_session(SessionRecord {
        session_hash: "sess-1".into(),
        sub: "alice".into(),
        auth_time: NOW,
        acr: Some("urn:bank:sca".into()),
        amr: r#"["pwd"]"#.into(),
        expires_at: NOW + 100,
    })
    .await
    .unwrap();
    assert!(
        s.consume_once(ReplayKind::DpopProof, "jti-1", NOW + 10, NOW)
            .await
            .unwrap()
    );
    s.rotate_keys(
        vec![KeyRecord {
            kid: "k1".into(),
            alg: "PS256".into(),
            key_use: "sig".into(),
            private_sealed: vec![0, 1, 0xff],
            public_jwk: r#"{"kid":"k1","kty":"RSA"}"#.into(),
            created_at: NOW,
            active_from: NOW,
            retired_at: None,
            expires_at: None,
        }],
        vec![],
    )
    .await
    .unwrap();
}

/// The previous release on the newest schema: a database migrated up to
/// the migration before the newest gets rows in the shape of that schema
/// (every column it had, none it did not), copied from rows the store
/// wrote; then the newest migration runs. The previous release's reads
/// (its columns) return those rows unchanged, its inserts (without the new
/// columns) succeed after the rows are deleted, and the current store
/// reads what the previous release wrote. After a `_contract` migration
/// the previous release's shape is what is left of it: it stopped using
/// what the migration drops.
async fn the_previous_release_works_on_the_newest_schema(backend: &str) {
    let db = match backend {
        "sqlite" => sqlite_db().await,
        _ => postgres_db().await,
    };
    populate(&db.store).await;
    let mut source = Raw::open(&db.url);
    let (url, _cleanup) = unmigrated(backend);
    let mut old = Raw::open(&url);
    let n = old.migration_names().len();
    assert!(n >= 2, "nothing to compare");
    old.run_migrations(0..n - 1);

    let mut shape: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for table in old.tables() {
        let cols = old.columns(&table).into_iter().map(|c| c.name).collect();
        shape.insert(table, cols);
    }
    let mut written = BTreeMap::new();
    let mut inserts = rows_as_inserts(&mut source, &shape, &mut written);
    let filled = written.values().filter(|r| !r.is_empty()).count();
    assert!(filled >= 8, "too few tables with rows: {written:?}");
    // Rows a migration seeded (the settings version) come with the copy.
    old.run_in_key_order(shape.keys().map(|t| format!("DELETE FROM {t}")).collect());
    old.run_in_key_order(inserts.clone());

    old.run_migrations(n - 1..n);
    let newest = &old.migration_names()[n - 1];
    if newest.ends_with("_contract") {
        // What it drops, the previous release no longer uses.
        for (table, cols) in &mut shape {
            let left: Vec<String> = old.columns(table).into_iter().map(|c| c.name).collect();
            cols.retain(|c| left.contains(c));
        }
        let tables = old.tables();
        shape.retain(|t, cols| tables.contains(t) && !cols.is_empty());
        inserts = rows_as_inserts(&mut source, &shape, &mut written);
    }
    for (table, cols) in &shape {
        assert_eq!(
            old.literal_rows(table, cols),
            written[table],
            "{table}: the previous release's read after the newest migration"
        );
    }
    let current = Store::connect(&url, 2).unwrap();
    assert_eq!(current.get_client("c1").await.unwrap(), Some(client("c1")));
    assert!(current.get_grant("g1").await.unwrap().is_some());
    assert!(
        current
            .get_active_token("at-1", NOW + 1)
            .await
            .unwrap()
            .is_some()
    );
    drop(current);

    let deletes = shape.keys().map(|t| format!("DELETE FROM {t}")).collect();
    old.run_in_key_order(deletes);
    old.run_in_key_order(inserts);
    for (table, cols) in &shape {
        assert_eq!(
            old.literal_rows(table, cols),
            written[table],
            "{table}: the previous release's insert after the newest migration"
        );
    }
}

/// The rows of `source` in `shape` (columns by table) as INSERT
/// statements; `written` gets each table's rows as [`Raw::literal_rows`].
fn rows_as_inserts(
    source: &mut Raw,
    shape: &BTreeMap<String, Vec<String>>,
    written: &mut BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    written.clear();
    let mut inserts = Vec::new();
    for (table, cols) in shape {
        let rows = source.literal_rows(table, cols);
        for r in &rows {
            inserts.push(format!(
                "INSERT INTO {table} ({}) VALUES ({r})",
                cols.join(", ")
            ));
        }
        written.insert(table.clone(), rows);
    }
    inserts
}

/// Every migration but a `_contract` one leaves what the release before it
/// used in place: each table and column is still there with its type, and
/// a column it added to an existing table can be left out of an insert.
async fn every_expand_migration_keeps_the_schema_before_it(backend: &str) {
    let (url, _cleanup) = unmigrated(backend);
    let mut conn = Raw::open(&url);
    let names = conn.migration_names();
    let mut before: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        conn.run_migrations(i..i + 1);
        let mut after = BTreeMap::new();
        for table in conn.tables() {
            let cols = conn.columns(&table);
            after.insert(table, cols);
        }
        if !name.ends_with("_contract") {
            for (table, cols) in &before {
                let now: &Vec<Column> = after
                    .get(table)
                    .unwrap_or_else(|| panic!("{name} dropped or renamed table {table}"));
                for c in cols {
                    assert!(
                        now.contains(c),
                        "{name} changed {table}.{} ({c:?}; now {now:?})",
                        c.name
                    );
                }
                for c in now
                    .iter()
                    .filter(|c| !cols.iter().any(|o| o.name == c.name))
                {
                    assert!(
                        !c.not_null || c.has_default,
                        "{name} added {table}.{}, NOT NULL without a default",
                        c.name
                    );
                }
            }
        }
        before = after;
    }
}

/// Each scenario, given the backend's name, becomes `<scenario>::sqlite`
/// and `<scenario>::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name("sqlite").await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name("postgres").await
            }
        }
    )*};
}

on_both!(
    the_previous_release_works_on_the_newest_schema,
    every_expand_migration_keeps_the_schema_before_it,
    instances_starting_together_migrate_once,
);

/// Two instances starting at once on a fresh database: while a third
/// holds the migration lock neither gets ahead, and once it is released
/// both succeed, with each migration applied exactly once.
async fn instances_starting_together_migrate_once(backend: &str) {
    let (url, _cleanup) = unmigrated(backend);
    let a = Store::connect(&url, 2).unwrap();
    let b = Store::connect(&url, 2).unwrap();
    let mut holder = Raw::open(&url);
    match &mut holder {
        Raw::Pg(c) => {
            diesel::sql_query(format!(
                "SELECT pg_advisory_lock({})",
                token_store::MIGRATION_LOCK_KEY
            ))
            .execute(c)
            .unwrap();
        }
        // SQLite's lock is the write transaction, the one a migration run
        // takes (BEGIN IMMEDIATE).
        Raw::Sqlite(c) => {
            diesel::sql_query("BEGIN IMMEDIATE").execute(c).unwrap();
        }
    }
    let runs = tokio::spawn(async move {
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        (ra, rb, a)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!runs.is_finished(), "a migration ran past the lock");
    match &mut holder {
        Raw::Pg(c) => {
            diesel::sql_query(format!(
                "SELECT pg_advisory_unlock({})",
                token_store::MIGRATION_LOCK_KEY
            ))
            .execute(c)
            .unwrap();
        }
        Raw::Sqlite(c) => {
            diesel::sql_query("COMMIT").execute(c).unwrap();
        }
    }
    let (ra, rb, store) = runs.await.unwrap();
    ra.unwrap();
    rb.unwrap();
    let names = holder.migration_names();
    let applied =
        holder.texts("SELECT version AS v FROM __diesel_schema_migrations ORDER BY version");
    let versions: Vec<String> = names
        .iter()
        .map(|n| n.split('_').next().unwrap().replace('-', ""))
        .collect();
    assert_eq!(applied, versions);
    store.put_client(client("c1")).await.unwrap();
}

/// What makes `sql` (one migration's `up.sql`) unfit outside a contract
/// migration, if anything: the previous release would lose a table or a
/// column it uses, find it retyped, or have its inserts refused.
fn destructive(sql: &str) -> Option<&'static str> {
    let code: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    for statement in code.split(';') {
        let s = format!(
            " {} ",
            statement
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_uppercase()
        );
        let alter = s.trim_start().starts_with("ALTER TABLE");
        if s.contains(" DROP TABLE ") {
            return Some("DROP TABLE");
        }
        if alter && s.contains(" DROP DEFAULT ") {
            // The previous release's inserts leave the column out.
            return Some("DROP DEFAULT");
        }
        if alter
            && s.contains(" DROP ")
            && !s.contains(" DROP CONSTRAINT ")
            && !s.contains(" DROP NOT NULL ")
        {
            return Some("DROP COLUMN");
        }
        if s.contains(" RENAME ") {
            return Some("RENAME");
        }
        if alter && changes_a_type(&s) {
            return Some("ALTER ... TYPE");
        }
        if alter && s.contains(" SET NOT NULL ") {
            return Some("SET NOT NULL");
        }
        if alter && s.contains(" ADD ") && s.contains(" NOT NULL ") && !s.contains(" DEFAULT ") {
            return Some("ADD COLUMN ... NOT NULL without DEFAULT");
        }
    }
    None
}

/// `ALTER [COLUMN] name [SET DATA] TYPE …` in an upper-cased ALTER TABLE
/// (a column named `type` is not one).
fn changes_a_type(statement: &str) -> bool {
    let words: Vec<&str> = statement.split_whitespace().collect();
    words.iter().enumerate().skip(1).any(|(i, w)| {
        let rest = &words[i + 1..];
        let rest = rest.strip_prefix(&["COLUMN"][..]).unwrap_or(rest);
        *w == "ALTER"
            && (rest.get(1) == Some(&"TYPE")
                || rest.get(1..4) == Some(&["SET", "DATA", "TYPE"][..]))
    })
}

#[test]
fn destructive_statements_are_recognised() {
    for (sql, what) in [
        ("DROP TABLE replay_cache;", Some("DROP TABLE")),
        ("drop table if exists x", Some("DROP TABLE")),
        (
            "ALTER TABLE tokens DROP COLUMN cnf_x5t;",
            Some("DROP COLUMN"),
        ),
        ("ALTER TABLE tokens\n  DROP cnf_x5t;", Some("DROP COLUMN")),
        (
            "ALTER TABLE tokens RENAME COLUMN sub TO subject",
            Some("RENAME"),
        ),
        ("ALTER TABLE tokens RENAME TO access_tokens", Some("RENAME")),
        (
            "ALTER TABLE tokens ALTER COLUMN scope TYPE VARCHAR(200)",
            Some("ALTER ... TYPE"),
        ),
        (
            "ALTER TABLE tokens ALTER scope SET DATA TYPE TEXT",
            Some("ALTER ... TYPE"),
        ),
        (
            "ALTER TABLE tokens ALTER COLUMN scope DROP DEFAULT",
            Some("DROP DEFAULT"),
        ),
        ("ALTER TABLE tokens ALTER COLUMN scope DROP NOT NULL", None),
        ("ALTER TABLE tokens ADD COLUMN type TEXT", None),
        (
            "ALTER TABLE tokens ALTER COLUMN sub SET NOT NULL",
            Some("SET NOT NULL"),
        ),
        (
            "ALTER TABLE tokens ADD COLUMN tenant TEXT NOT NULL;",
            Some("ADD COLUMN ... NOT NULL without DEFAULT"),
        ),
        (
            "ALTER TABLE tokens ADD tenant TEXT NOT NULL",
            Some("ADD COLUMN ... NOT NULL without DEFAULT"),
        ),
        (
            "ALTER TABLE tokens ADD COLUMN tenant TEXT NOT NULL DEFAULT 'main';",
            None,
        ),
        (
            "ALTER TABLE ciba_requests ADD COLUMN handle_hash TEXT;",
            None,
        ),
        ("ALTER TABLE t DROP CONSTRAINT t_check;", None),
        (
            "-- DROP TABLE in a comment\nCREATE TABLE t (a TEXT NOT NULL);",
            None,
        ),
        ("CREATE INDEX t_a ON t (a);", None),
    ] {
        assert_eq!(destructive(sql), what, "{sql}");
    }
}

/// The rule of docs/operations.md §5 on every migration of both backends:
/// a destructive statement only in a migration named `…_contract`.
#[test]
fn only_contract_migrations_destroy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut seen = 0;
    for backend in ["sqlite", "postgres"] {
        for entry in std::fs::read_dir(root.join(backend)).unwrap() {
            let dir = entry.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let Ok(up) = std::fs::read_to_string(dir.join("up.sql")) else {
                continue;
            };
            seen += 1;
            if let Some(what) = destructive(&up) {
                assert!(
                    name.ends_with("_contract"),
                    "migrations/{backend}/{name}/up.sql: {what} outside a `_contract` migration \
                     (docs/operations.md §5: expand, then contract)"
                );
            }
        }
    }
    assert!(seen >= 6, "{seen}");
}
