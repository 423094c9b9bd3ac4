//! The host functions: Spin's `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.1.0`
//! (which components built against 3.0.0 link to as well), sync and async forms, each a thin
//! translation to the same [`Conn`](crate::database::Conn) operations. Statements run on a
//! blocking thread; one still running when the request is abandoned is interrupted.

use kindling_host::{ComponentCtx, ComponentLinker, HostState};
use wasmtime::component::{Accessor, FutureReader, HasSelf, Resource, StreamReader};

use crate::database::{Conn, Database, Interrupt, Rows, SqlError, Value};
use crate::state::{OpenConnection, OpenError, SqlState};

wasmtime::component::bindgen!({
    path: "wit",
    world: "kindling:sqlite/host",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/sqlite.connection": crate::state::OpenConnection,
        "spin:sqlite/sqlite.connection": crate::state::OpenConnection,
    },
});

use fermyon::spin::sqlite as spin2;
use spin::sqlite::sqlite as spin3;

/// Adds every interface to the component linker; Spin 3's, which has `async func`s, only to
/// a linker with concurrency support (`concurrent`).
pub(crate) fn add_to_linker(
    linker: &mut ComponentLinker,
    concurrent: bool,
) -> wasmtime::Result<()> {
    fn state(host: &mut HostState<ComponentCtx>) -> &mut SqlState {
        host.state::<SqlState>()
            .expect("the sqlite capability prepares a state for every instance")
    }
    spin2::add_to_linker::<_, HasSelf<SqlState>>(linker, state)?;
    if concurrent {
        spin3::add_to_linker::<_, HasSelf<SqlState>>(linker, state)?;
    }
    Ok(())
}

/// Opens a connection to a granted database, off the async threads.
async fn connect(database: std::sync::Arc<Database>) -> Result<Conn, SqlError> {
    tokio::task::spawn_blocking(move || database.connect())
        .await
        .unwrap_or_else(|join| Err(SqlError::Io(format!("opening the database failed: {join}"))))
}

/// Runs a statement off the async threads, when the node has a turn free; if the caller stops
/// waiting (the request's deadline passed), the statement stops, or never starts.
async fn execute(conn: Conn, statement: String, parameters: Vec<Value>) -> Result<Rows, SqlError> {
    let turn = conn.database().turn().await;
    let interrupt = Interrupt::new();
    let watcher = interrupt.watcher();
    let result = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        conn.execute(&statement, parameters, &watcher)
    })
    .await;
    interrupt.done();
    result.unwrap_or_else(|join| Err(SqlError::Io(format!("the statement failed: {join}"))))
}

/// The conversions between one interface version's types and the database's.
macro_rules! conversions {
    ($m:ident) => {
        impl From<$m::Value> for Value {
            fn from(value: $m::Value) -> Self {
                match value {
                    $m::Value::Integer(i) => Value::Integer(i),
                    $m::Value::Real(f) => Value::Real(f),
                    $m::Value::Text(s) => Value::Text(s),
                    $m::Value::Blob(b) => Value::Blob(b),
                    $m::Value::Null => Value::Null,
                }
            }
        }

        impl From<Value> for $m::Value {
            fn from(value: Value) -> Self {
                match value {
                    Value::Integer(i) => $m::Value::Integer(i),
                    Value::Real(f) => $m::Value::Real(f),
                    Value::Text(s) => $m::Value::Text(s),
                    Value::Blob(b) => $m::Value::Blob(b),
                    Value::Null => $m::Value::Null,
                }
            }
        }

        impl From<SqlError> for $m::Error {
            fn from(err: SqlError) -> Self {
                match err {
                    SqlError::Full(_) => $m::Error::DatabaseFull,
                    SqlError::Io(why) => $m::Error::Io(why),
                }
            }
        }

        impl From<OpenError> for $m::Error {
            fn from(err: OpenError) -> Self {
                match err {
                    OpenError::Denied => $m::Error::AccessDenied,
                    OpenError::Full => {
                        $m::Error::Io("too many connections open in this instance".into())
                    }
                }
            }
        }

        impl $m::Host for SqlState {}

        impl SqlState {
            async fn $m(
                &mut self,
                database: String,
            ) -> wasmtime::Result<Result<Resource<OpenConnection>, $m::Error>> {
                let database = match self.granted(&database) {
                    Ok(database) => database,
                    Err(err) => return Ok(Err(err.into())),
                };
                Ok(match connect(database).await {
                    Ok(conn) => self.push(conn).map_err(Into::into),
                    Err(err) => Err(err.into()),
                })
            }
        }
    };
}

fn rows<R>(rows: Vec<Vec<Value>>, row: impl Fn(Vec<Value>) -> R) -> Vec<R> {
    rows.into_iter().map(row).collect()
}

fn values<T: From<Value>>(values: Vec<Value>) -> Vec<T> {
    values.into_iter().map(Into::into).collect()
}

conversions!(spin2);
conversions!(spin3);

impl spin2::HostConnection for SqlState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, spin2::Error>> {
        self.spin2(database).await
    }

    async fn execute(
        &mut self,
        conn: Resource<OpenConnection>,
        statement: String,
        parameters: Vec<spin2::Value>,
    ) -> wasmtime::Result<Result<spin2::QueryResult, spin2::Error>> {
        let conn = self.conn(&conn)?;
        let parameters = parameters.into_iter().map(Into::into).collect();
        Ok(execute(conn, statement, parameters)
            .await
            .map(|result| spin2::QueryResult {
                columns: result.columns,
                rows: rows(result.rows, |row| spin2::RowResult {
                    values: values(row),
                }),
            })
            .map_err(Into::into))
    }

    async fn drop(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.close(conn)
    }
}

impl spin3::HostConnection for SqlState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, spin3::Error>> {
        self.spin3(database).await
    }

    async fn execute(
        &mut self,
        conn: Resource<OpenConnection>,
        statement: String,
        parameters: Vec<spin3::Value>,
    ) -> wasmtime::Result<Result<spin3::QueryResult, spin3::Error>> {
        let conn = self.conn(&conn)?;
        let parameters = parameters.into_iter().map(Into::into).collect();
        Ok(execute(conn, statement, parameters)
            .await
            .map(|result| spin3::QueryResult {
                columns: result.columns,
                rows: rows(result.rows, |row| spin3::RowResult {
                    values: values(row),
                }),
            })
            .map_err(Into::into))
    }

    async fn last_insert_rowid(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<i64> {
        Ok(self.conn(&conn)?.last_insert_rowid())
    }

    async fn changes(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<u64> {
        Ok(self.conn(&conn)?.changes())
    }

    async fn drop(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.close(conn)
    }
}

type AsyncRows = (
    Vec<String>,
    StreamReader<spin3::RowResult>,
    FutureReader<Result<(), spin3::Error>>,
);

impl<U: 'static> spin3::HostConnectionWithStore<U> for HasSelf<SqlState> {
    async fn open_async(
        accessor: &Accessor<U, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, spin3::Error>> {
        let database = match accessor.with(|mut access| access.get().granted(&database)) {
            Ok(database) => database,
            Err(err) => return Ok(Err(err.into())),
        };
        Ok(match connect(database).await {
            Ok(conn) => accessor
                .with(|mut access| access.get().push(conn))
                .map_err(Into::into),
            Err(err) => Err(err.into()),
        })
    }

    async fn execute_async(
        accessor: &Accessor<U, Self>,
        conn: Resource<OpenConnection>,
        statement: String,
        parameters: Vec<spin3::Value>,
    ) -> wasmtime::Result<Result<AsyncRows, spin3::Error>> {
        let conn = accessor.with(|mut access| access.get().conn(&conn))?;
        let parameters = parameters.into_iter().map(Into::into).collect();
        // The rows are read whole (within the database's result limit) before the stream
        // opens, so the statement holds its connection no longer than it must.
        let result = match execute(conn, statement, parameters).await {
            Ok(result) => result,
            Err(err) => return Ok(Err(err.into())),
        };
        let rows = rows(result.rows, |row| spin3::RowResult {
            values: values(row),
        });
        accessor.with(|mut access| {
            let rows = StreamReader::new(&mut access, rows)?;
            let ended = FutureReader::new(&mut access, async {
                Ok::<_, wasmtime::Error>(Ok::<(), spin3::Error>(()))
            })?;
            Ok(Ok((result.columns, rows, ended)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<U, Self>,
        conn: Resource<OpenConnection>,
    ) -> wasmtime::Result<i64> {
        Ok(accessor
            .with(|mut access| access.get().conn(&conn))?
            .last_insert_rowid())
    }

    async fn changes_async(
        accessor: &Accessor<U, Self>,
        conn: Resource<OpenConnection>,
    ) -> wasmtime::Result<u64> {
        Ok(accessor
            .with(|mut access| access.get().conn(&conn))?
            .changes())
    }
}
