//! `kindling deploy NAME FILE`: upload a module with its configuration; the node validates,
//! compiles and activates it, or refuses it and keeps the previous version serving.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use kindling_host::{DeployFlag, FlagForm};
use kindling_registry::{FunctionConfig, InvokeAuth, Priority};
use serde_json::Value;

use super::{OutputArgs, ServerArgs};
use crate::UsageError;
use crate::output::print_json;
use crate::units::{format_size, parse_duration, parse_size};

// Per-deploy settings have no environment twins on purpose: a variable that silently applied
// to every deploy would be a trap.
#[derive(Debug, Args)]
pub(crate) struct DeployCommand {
    /// Function name: lowercase letters, digits and `-`; it is also the route /{name}/
    name: String,
    /// The .wasm file: a wasi:http component or a WAGI (WASI preview 1) module
    file: PathBuf,
    /// The host capabilities' flags (--env, --allow-outbound, --mount, ...).
    #[command(flatten)]
    capabilities: CapabilityFlags,
    /// Deadline per request, such as 2s (node default 30s)
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Memory the function may grow to, such as 64MiB (node default 128MiB)
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// CPU budget per request in fuel units, about one per instruction (node needs --fuel)
    #[arg(long)]
    cpu_fuel: Option<u64>,
    /// Most instances of the function running at once; more requests wait in its queue
    #[arg(long)]
    concurrency: Option<u32>,
    /// Requests that may wait when the function is at its concurrency limit; more get 429
    #[arg(long)]
    queue: Option<u32>,
    /// How long a request may wait in the queue, such as 2s
    #[arg(long, value_parser = parse_duration)]
    queue_timeout: Option<Duration>,
    /// Priority under overload: critical, normal or batch (lower classes are shed first)
    #[arg(long)]
    priority: Option<Priority>,
    /// The tenant namespace its requests are accounted to
    #[arg(long)]
    namespace: Option<String>,
    /// Largest request body the function accepts, such as 1MiB
    #[arg(long, value_parser = parse_size)]
    max_request_body: Option<u64>,
    /// Largest response a WAGI function may write, such as 1MiB
    #[arg(long, value_parser = parse_size)]
    max_response_body: Option<u64>,
    /// A requirement the workload declares, such as security=high or startup=ultra-low
    /// (repeatable); `kindling advise --function NAME` judges them
    #[arg(long = "require", value_name = "DIMENSION=LEVEL")]
    require: Vec<String>,
    /// Who may call the function: public (default) or token (callers need a token with the
    /// invoke scope for its namespace)
    #[arg(long, value_parser = parse_auth)]
    auth: Option<InvokeAuth>,
    /// Link imports Kindling does not provide (llm, mysql, ...) to stand-ins that trap when
    /// called, instead of refusing the deploy
    #[arg(long)]
    allow_unsupported_imports: bool,
    /// Retries of a failed asynchronous invocation before it goes to the dead-letter store
    /// (default 5)
    #[arg(long)]
    retries: Option<u32>,
    /// Delay before the first retry and the longest delay, doubling in between, such as
    /// 1s..5m (the default)
    #[arg(long, value_name = "MIN..MAX", value_parser = kindling_events::parse_range)]
    backoff: Option<(u64, u64)>,
    /// Fire the function on a cron schedule, five fields or six with seconds first, such as
    /// "*/5 * * * *" (repeatable)
    #[arg(long = "schedule", value_name = "CRON")]
    schedules: Vec<String>,
    /// The IANA time zone the schedules are read in, such as Europe/Paris (default UTC)
    #[arg(long, value_name = "ZONE", requires = "schedules")]
    schedule_tz: Option<String>,
    /// What the schedules do with firings missed while the node was down: skip (default) or
    /// run-once
    #[arg(long, value_name = "POLICY", requires = "schedules")]
    schedule_missed: Option<kindling_registry::Missed>,
    /// The path a schedule invokes the function with (default /)
    #[arg(long, value_name = "PATH", requires = "schedules")]
    schedule_path: Option<String>,
    /// Consume from a broker (repeatable): nats:SUBJECT, jetstream:STREAM or redis:STREAM,
    /// with options after `?`: group=NAME (queue group or consumer), subject=FILTER
    /// (jetstream), reply=SUBJECT-OR-STREAM (jetstream, redis), path=/PATH
    #[arg(long = "trigger", value_name = "KIND:SOURCE", value_parser = kindling_registry::TriggerConfig::parse)]
    triggers: Vec<kindling_registry::TriggerConfig>,
    /// A JSON file with the whole configuration ({"env": {...}, "limits": {...}}); flags override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_auth(text: &str) -> Result<InvokeAuth, String> {
    match text {
        "public" => Ok(InvokeAuth::Public),
        "token" => Ok(InvokeAuth::Token),
        other => Err(format!("{other:?} is neither `public` nor `token`")),
    }
}

impl DeployCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let config = self.config()?;
        let module = std::fs::read(&self.file)
            .map_err(|err| UsageError(format!("cannot read {}: {err}", self.file.display())))?;
        let client = self.server.client()?;
        let deployed = client
            .deploy(&self.name, module, &config)
            .await
            .with_context(|| format!("deploy of {:?} failed", self.name))?;
        if self.output.json {
            return print_json(&deployed);
        }
        let version = &deployed.version;
        if deployed.unchanged {
            crate::output::outln!(
                "{} already serves version {} with this module and configuration; nothing changed",
                self.name,
                version.version
            );
        } else {
            let load = deployed
                .load
                .as_ref()
                .map(|load| match load.source.as_str() {
                    "compiled" => format!(", compiled in {:.1} ms", load.millis),
                    "cache" => format!(
                        ", nothing compiled: these bytes were compiled before (cache, {:.1} ms)",
                        load.millis
                    ),
                    "shared" => {
                        ", nothing compiled: the code is shared with a loaded function".to_string()
                    }
                    other => format!(", {other} in {:.1} ms", load.millis),
                })
                .unwrap_or_default();
            crate::output::outln!(
                "deployed {} version {} ({}, {}, sha256 {}){load}",
                self.name,
                version.version,
                version.kind,
                format_size(version.size_bytes),
                &version.sha256[..12],
            );
        }
        crate::output::outln!("  try: curl {}/{}/", client.base(), self.name);
        Ok(())
    }

    fn config(&self) -> Result<FunctionConfig, UsageError> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    UsageError(format!("cannot read --config {}: {err}", path.display()))
                })?;
                serde_json::from_str(&text).map_err(|err| {
                    UsageError(format!(
                        "--config {} is not a valid configuration: {err}",
                        path.display()
                    ))
                })?
            }
            None => FunctionConfig::default(),
        };
        self.capabilities.apply(&mut config)?;
        if let Some(timeout) = self.timeout {
            config.limits.timeout_ms = Some(timeout.as_millis().max(1) as u64);
        }
        if let Some(bytes) = self.memory {
            config.limits.memory_bytes = Some(bytes);
        }
        if let Some(fuel) = self.cpu_fuel {
            config.limits.cpu_fuel = Some(fuel);
        }
        if let Some(limit) = self.concurrency {
            config.limits.max_concurrency = Some(limit);
        }
        if let Some(queue) = self.queue {
            config.limits.queue_len = Some(queue);
        }
        if let Some(timeout) = self.queue_timeout {
            config.limits.queue_timeout_ms = Some(timeout.as_millis() as u64);
        }
        if let Some(priority) = self.priority {
            config.priority = Some(priority);
        }
        if let Some(namespace) = &self.namespace {
            config.namespace = Some(namespace.clone());
        }
        if self.allow_unsupported_imports {
            config.allow_unsupported_imports = true;
        }
        if let Some(auth) = self.auth {
            config.auth = Some(auth);
        }
        if self.retries.is_some() || self.backoff.is_some() {
            let mut retry = config.retry.unwrap_or_default();
            if let Some(retries) = self.retries {
                retry.retries = retries;
            }
            if let Some((min, max)) = self.backoff {
                retry.backoff_min_ms = min;
                retry.backoff_max_ms = max;
            }
            config.retry = Some(retry);
        }
        if !self.triggers.is_empty() {
            config.triggers = self.triggers.clone();
        }
        if !self.schedules.is_empty() {
            config.schedules = self
                .schedules
                .iter()
                .map(|cron| {
                    let schedule = kindling_registry::ScheduleConfig {
                        cron: cron.clone(),
                        timezone: self.schedule_tz.clone(),
                        missed: self.schedule_missed.unwrap_or_default(),
                        path: self.schedule_path.clone(),
                    };
                    kindling_events::Schedule::parse(&schedule)
                        .map(|_| schedule)
                        .map_err(|why| UsageError(format!("--schedule: {why}")))
                })
                .collect::<Result<_, _>>()?;
        }
        for pair in &self.require {
            let (dimension, level) = pair.split_once('=').ok_or_else(|| {
                UsageError(format!(
                    "--require {pair:?} must be DIMENSION=LEVEL, such as security=high"
                ))
            })?;
            config
                .requirements
                .insert(dimension.trim().to_string(), level.trim().to_string());
        }
        if let Some(bytes) = self.max_request_body {
            config.limits.max_request_body_bytes = Some(bytes);
        }
        if let Some(bytes) = self.max_response_body {
            config.limits.max_response_body_bytes = Some(bytes);
        }
        config
            .validate()
            .map_err(|err| UsageError(err.to_string()))?;
        Ok(config)
    }
}

/// The flags every capability of the node offers, added to `deploy`'s own; each use fills the
/// capability's field of the configuration.
#[derive(Debug, Default)]
struct CapabilityFlags {
    uses: Vec<(DeployFlag, Vec<String>)>,
}

fn capability_flags() -> Vec<DeployFlag> {
    super::serve::capabilities(&Default::default())
        .map(|capabilities| capabilities.deploy_flags())
        .unwrap_or_default()
}

impl CapabilityFlags {
    /// Writes the flags' values into `config`, after what `--config` gave.
    fn apply(&self, config: &mut FunctionConfig) -> Result<(), UsageError> {
        for (flag, values) in &self.uses {
            let field = config
                .sections
                .entry(flag.field.to_string())
                .or_insert_with(|| match flag.form {
                    FlagForm::KeyValue | FlagForm::KeyValueOrFile => {
                        Value::Object(Default::default())
                    }
                    _ => Value::Array(Vec::new()),
                });
            for value in values {
                match (flag.form, &mut *field) {
                    (FlagForm::KeyValue | FlagForm::KeyValueOrFile, Value::Object(map)) => {
                        let (key, text) = value.split_once('=').ok_or_else(|| {
                            UsageError(format!("--{} {value:?} must be KEY=VALUE", flag.long))
                        })?;
                        let text = match text.strip_prefix('@') {
                            Some(path) if matches!(flag.form, FlagForm::KeyValueOrFile) => {
                                std::fs::read_to_string(path).map_err(|err| {
                                    UsageError(format!("--{} {key}=@{path}: {err}", flag.long))
                                })?
                            }
                            _ => text.to_string(),
                        };
                        map.insert(key.to_string(), Value::String(text));
                    }
                    (FlagForm::List, Value::Array(list)) => list.push(Value::String(value.clone())),
                    (FlagForm::ListOf(parse), Value::Array(list)) => {
                        list.push(parse(value).map_err(UsageError)?)
                    }
                    _ => {
                        return Err(UsageError(format!(
                            "--{} cannot be combined with the {:?} of --config, which has \
                             another shape",
                            flag.long, flag.field
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

impl FromArgMatches for CapabilityFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let uses = capability_flags()
            .into_iter()
            .map(|flag| {
                let values = matches
                    .get_many::<String>(flag.long)
                    .map(|values| values.cloned().collect())
                    .unwrap_or_default();
                (flag, values)
            })
            .collect();
        Ok(Self { uses })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for CapabilityFlags {
    fn augment_args(command: Command) -> Command {
        capability_flags()
            .into_iter()
            .fold(command, |command, flag| {
                command.arg(
                    Arg::new(flag.long)
                        .long(flag.long)
                        .short(flag.short)
                        .value_name(flag.value_name)
                        .help(flag.help)
                        .action(ArgAction::Append),
                )
            })
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}
