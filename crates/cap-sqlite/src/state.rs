//! One instance's SQLite state: the databases it was granted and the connections it has open.

use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use crate::capability::Granted;
use crate::database::{Conn, Database};

/// Most connections one instance may have open at once.
const MAX_OPEN: usize = 16;

/// A connection a guest opened (the host side of its handle).
pub struct OpenConnection {
    pub(crate) conn: Conn,
}

/// The SQLite capability's state in an instance's store.
pub struct SqlState {
    granted: Arc<Granted>,
    table: ResourceTable,
    open: usize,
}

/// Why a label cannot be opened.
pub(crate) enum OpenError {
    /// Not granted to this function at deploy.
    Denied,
    /// Too many open already.
    Full,
}

impl SqlState {
    pub(crate) fn new(granted: Arc<Granted>) -> Self {
        Self {
            granted,
            table: ResourceTable::new(),
            open: 0,
        }
    }

    /// The database of a label, if the function was granted it and may open one more.
    pub(crate) fn granted(&self, label: &str) -> Result<Arc<Database>, OpenError> {
        let database = self.granted.databases.get(label).ok_or(OpenError::Denied)?;
        if self.open >= MAX_OPEN {
            return Err(OpenError::Full);
        }
        Ok(database.clone())
    }

    /// Hands the guest a handle to a new connection.
    pub(crate) fn push(&mut self, conn: Conn) -> Result<Resource<OpenConnection>, OpenError> {
        if self.open >= MAX_OPEN {
            return Err(OpenError::Full);
        }
        let handle = self
            .table
            .push(OpenConnection { conn })
            .map_err(|_| OpenError::Full)?;
        self.open += 1;
        Ok(handle)
    }

    /// The connection behind a handle the guest holds.
    pub(crate) fn conn(&self, handle: &Resource<OpenConnection>) -> wasmtime::Result<Conn> {
        Ok(self.table.get(handle)?.conn.clone())
    }

    /// Closes a connection handle.
    pub(crate) fn close(&mut self, handle: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.open -= 1;
        Ok(())
    }
}
