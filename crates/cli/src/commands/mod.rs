//! The command line: one file per subcommand, shared flags flattened in.

mod access;
mod advise;
mod backup;
mod bench;
mod deploy;
mod fleet;
mod inspect;
mod invocations;
mod invoke;
mod kv;
mod logs;
mod ls;
mod nodes;
mod rm;
mod rollback;
mod serve;
mod serve_cluster;
mod serve_edge;
mod serve_pool;
mod sim;
mod sqlite;
mod versions;

use clap::{Args, Parser, Subcommand};

use crate::client::Client;

/// Kindling: serverless WebAssembly functions that start in well under a millisecond.
#[derive(Debug, Parser)]
#[command(name = "kindling", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: the gateway, the admin API and the runtime
    Serve(Box<serve::ServeCommand>),
    /// Upload a .wasm file as a new version of a function and make it serve
    Deploy(deploy::DeployCommand),
    /// List the deployed functions
    #[command(alias = "list")]
    Ls(ls::LsCommand),
    /// Show one function: version, kind, configuration, how it was loaded
    Inspect(inspect::InspectCommand),
    /// List a function's versions
    Versions(versions::VersionsCommand),
    /// Make an earlier version serve again
    Rollback(rollback::RollbackCommand),
    /// Delete a function and all its versions
    #[command(alias = "delete")]
    Rm(rm::RmCommand),
    /// Print a function's recent guest output; --follow for new lines as they come
    Logs(logs::LogsCommand),
    /// Call a function through the gateway and print the response
    Invoke(invoke::InvokeCommand),
    /// Asynchronous invocations and the dead-letter store: ls, show, retry, purge, rm
    Invocations(invocations::InvocationsCommand),
    /// Read and write guests' key-value stores: get, set, rm, ls
    Kv(kv::KvCommand),
    /// Run SQL on guests' SQLite databases, or list them
    Sqlite(sqlite::SqliteCommand),
    /// Load a URL and report throughput and latency percentiles
    Bench(bench::BenchCommand),
    /// Where a workload belongs: technology-selection decision trees, decision matrices and a
    /// technology relation network
    Advise(advise::AdviseCommand),
    /// Replay a serverless trace through keep-alive policies: cold starts against memory held
    Sim(sim::SimCommand),
    /// List the nodes of the cluster this node belongs to, with their state and load
    Nodes(nodes::NodesCommand),
    /// Make, list and revoke API tokens
    Token(access::TokenCommand),
    /// Create, list and set namespaces and their quotas
    #[command(alias = "namespace")]
    Ns(access::NsCommand),
    /// Store, list and remove Rego policies (admission and authorization)
    Policy(access::PolicyCommand),
    /// Show the audit log of admin actions
    Audit(access::AuditCommand),
    /// Copy a node's registry and modules to a new directory (safe while it serves)
    Backup(backup::BackupCommand),
    /// Put a backup back into a data directory (with its node stopped)
    Restore(backup::RestoreCommand),
}

impl Cli {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(command) => (*command).execute().await,
            Command::Deploy(command) => command.execute().await,
            Command::Ls(command) => command.execute().await,
            Command::Inspect(command) => command.execute().await,
            Command::Versions(command) => command.execute().await,
            Command::Rollback(command) => command.execute().await,
            Command::Rm(command) => command.execute().await,
            Command::Logs(command) => command.execute().await,
            Command::Invoke(command) => command.execute().await,
            Command::Invocations(command) => command.execute().await,
            Command::Kv(command) => command.execute().await,
            Command::Sqlite(command) => command.execute().await,
            Command::Bench(command) => command.execute().await,
            Command::Advise(command) => command.execute().await,
            Command::Sim(command) => command.execute().await,
            Command::Nodes(command) => command.execute().await,
            Command::Token(command) => command.execute().await,
            Command::Ns(command) => command.execute().await,
            Command::Policy(command) => command.execute().await,
            Command::Audit(command) => command.execute().await,
            Command::Backup(command) => command.execute().await,
            Command::Restore(command) => command.execute().await,
        }
    }
}

/// Which node to talk to, and as whom.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// URL of the Kindling node
    #[arg(
        long,
        env = "KINDLING_SERVER",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    server: String,
    /// API token (default: for a node on this machine, the admin.token in its data
    /// directory, KINDLING_DATA_DIR or ./.kindling)
    #[arg(long, env = "KINDLING_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for an https:// node, besides the system's roots
    #[arg(long, env = "KINDLING_CA_CERT", value_name = "FILE", global = true)]
    ca_cert: Option<std::path::PathBuf>,
}

impl ServerArgs {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Client::with_credentials(&self.server, self.token.clone(), self.ca_cert.as_deref())
    }
}

/// How to print results.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Print JSON instead of text, for scripts
    #[arg(long, env = "KINDLING_JSON", global = true)]
    json: bool,
}
