use diesel::prelude::*;
use oauth_core::storage::{HealthCheck, StoreResult};

use crate::Store;

impl HealthCheck for Store {
    /// Checks out a connection (the pool validates it) and runs `SELECT 1`.
    async fn ping(&self) -> StoreResult<()> {
        self.run(|conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await
    }
}
