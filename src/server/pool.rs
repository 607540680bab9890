//! A few registry connections shared by the request handlers. A SQLite
//! connection is not `Sync`, so each request takes one for itself on a
//! blocking thread; with WAL, reads run side by side with each other and
//! with one writer (writers queue on SQLite's lock, as CLI processes do).

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::error::{Error, ErrorKind, Result};
use crate::registry::Registry;

/// At most this many requests use the registry at once (and as many
/// connections stay open); the rest wait their turn without a thread.
const CONNECTIONS: usize = 8;

pub struct Pool {
    db: String,
    idle: Mutex<Vec<Registry>>,
    permits: Semaphore,
}

impl Pool {
    pub fn new(db: &str) -> Arc<Pool> {
        Arc::new(Pool {
            db: db.to_string(),
            idle: Mutex::new(Vec::with_capacity(CONNECTIONS)),
            permits: Semaphore::new(CONNECTIONS),
        })
    }

    /// Runs `f` on a connection of its own, off the async threads.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Registry) -> Result<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| stopping())?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut reg = match idle {
                Some(reg) => reg,
                None => Registry::open_existing(&pool.db)?,
            };
            let out = f(&mut reg);
            pool.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(reg);
            out
        })
        .await
        .map_err(|_| stopping())?
    }
}

fn stopping() -> Error {
    Error::new(
        ErrorKind::Registry,
        "cannot serve the request",
        "the server is stopping",
    )
}
