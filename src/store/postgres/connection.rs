//! Opening the store: the migrations on a connection of their own, the pool the lookups
//! and the admin API share, and the audit writer with its own runtime and connection.

use super::*;

/// The longest a store call (a lookup, an admin write, a list) may take, checkout
/// included: a PostgreSQL that stops answering fails the call rather than hanging the
/// request.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest opening a connection may take (when the URL does not say).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one write of the audit writer may take: past it, the batch counts as
/// failed (tried again, then spilled).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl PgStore {
    /// Connects to `url`, applies pending migrations (under the advisory lock) and starts
    /// the audit writer, with the default audit queue bound and no retention. The spill file
    /// is `<spill_next_to>.audit-spill.jsonl`.
    pub fn open(url: &str, pool: usize, spill_next_to: &Path) -> Result<Self, StoreError> {
        Self::open_with(url, pool, spill_next_to, AuditOptions::default())
    }

    /// As [`PgStore::open`], with the audit queue's bound and retention of `audit`. Fails
    /// when the database cannot be reached or migrated: a node does not start on a store it
    /// cannot use. Once open, the pool reconnects by itself; rows left in the spill file by
    /// an earlier run are replayed by the writer.
    pub fn open_with(
        url: &str,
        pool: usize,
        spill_next_to: &Path,
        audit: AuditOptions,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("not a PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("rosetta");
        }
        let boot = start_up(config.clone())?;
        let sink = PgSink::new(config.clone())?;
        let pipe = Pipe::start(
            "rosetta-store-writer",
            sink,
            audit.queue,
            Spill::next_to(spill_next_to),
            Retention::new(audit.days, audit.wall),
            boot,
        )?;
        Ok(Self {
            pool: build_pool(config, pool)?,
            pipe,
        })
    }

    /// A connection from the pool.
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("no PostgreSQL connection: {e}")))
    }

    /// Runs `call` with [`CALL_TIMEOUT`].
    pub(super) fn call<'a, T: Send + 'a>(
        &'a self,
        call: impl Future<Output = Result<T, StoreError>> + Send + 'a,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Backend(format!(
                        "PostgreSQL did not answer within {CALL_TIMEOUT:?}"
                    )))
                })
        })
    }
}

/// A pool of `size` connections, opened when first needed and again after a failure.
fn build_pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A connection whose socket closed is dropped at checkout; one that fails a
            // query later is dropped then (the caller gets that one error).
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(CALL_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Backend(format!("the PostgreSQL pool: {e}")))
}

/// Connects once, migrates and takes this open's boot number, on a thread and runtime of
/// its own: opening is called at start, from synchronous code or inside a runtime alike.
fn start_up(config: tokio_postgres::Config) -> Result<i64, StoreError> {
    let run = move || -> Result<i64, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("a runtime to migrate on: {e}")))?;
        rt.block_on(async move {
            let (mut client, connection) = config.connect(NoTls).await.map_err(pg)?;
            let driver = tokio::spawn(connection);
            let boot = async {
                schema::migrate(&mut client).await?;
                let boot: i64 = client
                    .query_one(writer::NEXT_BOOT_SQL, &[])
                    .await
                    .map_err(pg)?
                    .get(0);
                Ok(boot)
            }
            .await;
            drop(client);
            let _ = driver.await;
            boot
        })
    };
    std::thread::Builder::new()
        .name("rosetta-store-migrate".into())
        .spawn(run)
        .map_err(|e| StoreError::Backend(format!("cannot start the migration: {e}")))?
        .join()
        .unwrap_or_else(|_| Err(StoreError::Backend("the migration panicked".into())))
}

/// The audit writer's side of PostgreSQL: a current-thread runtime owned by the writer
/// thread and a pool of one connection on it, so the writer depends on no other runtime
/// (it outlives the gateway's at a stop, to flush) and reconnects by itself.
pub(super) struct PgSink {
    rt: tokio::runtime::Runtime,
    pool: Pool,
}

impl PgSink {
    fn new(config: tokio_postgres::Config) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("the writer's runtime: {e}")))?;
        Ok(Self {
            rt,
            pool: build_pool(config, 1)?,
        })
    }

    /// Runs one write on the writer's runtime, bounded by [`WRITE_TIMEOUT`].
    pub(super) fn block<T>(
        &self,
        write: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.rt.block_on(async {
            let attempt = async {
                let mut client =
                    self.pool.get().await.map_err(|e| {
                        StoreError::Backend(format!("no PostgreSQL connection: {e}"))
                    })?;
                write(&mut client).await
            };
            tokio::time::timeout(WRITE_TIMEOUT, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Backend(format!(
                        "PostgreSQL did not take the write within {WRITE_TIMEOUT:?}"
                    )))
                })
        })
    }
}
