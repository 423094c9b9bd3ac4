//! `kindling advise`: where a workload belongs, from the technology-selection decision trees,
//! decision matrices and technology coordinates (the `kindling-advisor` crate). Requirements
//! come from flags, from an interactive prompt, or from what a deployed function declared.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kindling_advisor::{Answers, Coordinate, FunctionProfile, KnowledgeBase, Prompt};

use super::ServerArgs;
use crate::UsageError;
use crate::output::print_json;

#[derive(Debug, Args)]
pub(crate) struct AdviseCommand {
    /// Walk this scenario's tree: finance, microservices, serverless, edge, multi-tenant,
    /// ci-cd, plugins (without it, the general requirements tree)
    #[arg(long)]
    scenario: Option<String>,
    /// Security requirement: low, medium, high, ultra-high
    #[arg(long)]
    security: Option<String>,
    /// Performance requirement: low, medium, high, ultra-high
    #[arg(long)]
    performance: Option<String>,
    /// How short start-up must be: relaxed, medium, low, ultra-low
    #[arg(long)]
    startup: Option<String>,
    /// Iteration speed: slow, medium, fast
    #[arg(long)]
    iteration: Option<String>,
    /// Kind of data stored: oltp, mass-files, configuration, dev-test, objects, cold-archive
    #[arg(long)]
    storage: Option<String>,
    /// Any other answer a tree asks for, such as state=stateful or kubernetes=no
    #[arg(long = "set", value_name = "DIMENSION=LEVEL")]
    set: Vec<String>,
    /// Ask the questions the flags did not answer
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Judge a deployed function's declared requirements against Kindling's sandbox
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// The stack at a technology coordinate, such as 4,2,3,2025,1,edge,OTLP+eBPF
    #[arg(long, value_name = "COORDINATE")]
    coordinate: Option<String>,
    /// The coordinates of a stack, such as "K3s + WasmEdge + Gatekeeper"
    #[arg(long)]
    stack: Option<String>,
    /// A scenario's evolution path over the years
    #[arg(long, value_name = "SCENARIO")]
    evolution: Option<String>,
    /// The isolation levels L-0..L-4 with their strength and overhead orders
    #[arg(long)]
    isolation: bool,
    /// Read this knowledge base instead of the embedded one
    #[arg(long, env = "KINDLING_KB", value_name = "FILE")]
    kb: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Same as --format json
    #[arg(long, env = "KINDLING_JSON")]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Mermaid,
}

impl AdviseCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let kb = self.knowledge_base()?;
        let format = if self.json { Format::Json } else { self.format };
        let usage =
            |err: kindling_advisor::AdviceError| anyhow::Error::new(UsageError(err.to_string()));
        let modes = [
            self.coordinate.is_some(),
            self.stack.is_some(),
            self.evolution.is_some(),
            self.isolation,
            self.function.is_some(),
        ];
        if modes.iter().filter(|m| **m).count() > 1 {
            return Err(UsageError(
                "give one of --coordinate, --stack, --evolution, --isolation and --function".into(),
            )
            .into());
        }
        if format == Format::Mermaid && modes.iter().any(|m| *m) {
            return Err(UsageError(
                "--format mermaid draws a decision tree; use it with requirements or --scenario"
                    .into(),
            )
            .into());
        }
        if let Some(coordinate) = &self.coordinate {
            let at = Coordinate::parse(coordinate).map_err(usage)?;
            let matches = kb.stacks_near(&at, 3);
            return emit(format, &matches, || kb.matches_text(&matches));
        }
        if let Some(stack) = &self.stack {
            let matches = kb.coordinates_of(stack);
            return emit(format, &matches, || kb.matches_text(&matches));
        }
        if let Some(scenario) = &self.evolution {
            let path = kb.evolution_of(scenario).map_err(usage)?;
            return emit(format, &path, || kb.evolution_text(&path));
        }
        if self.isolation {
            let isolation = serde_json::json!({
                "levels": kb.isolation.levels,
                "strength": kb.isolation.strength.get_ref(),
                "overhead": kb.isolation.overhead.get_ref(),
                "milestones": kb.milestones,
            });
            return emit(format, &isolation, || kb.isolation_text());
        }
        if let Some(name) = &self.function {
            let profile = self.profile(name).await?;
            let verdict = kb.judge_function(&profile).map_err(|err| {
                anyhow::anyhow!("function {name:?} declares requirements this knowledge base does not know: {err}")
            })?;
            return emit(format, &verdict, || kb.verdict_text(&verdict));
        }

        let answers = self.answers()?;
        let mut terminal = Terminal;
        let prompt: Option<&mut dyn Prompt> = if self.interactive {
            Some(&mut terminal)
        } else {
            None
        };
        let advice = kb
            .advise(self.scenario.as_deref(), &answers, prompt)
            .map_err(usage)?;
        match format {
            Format::Mermaid => {
                let chart = kb
                    .mermaid(&advice.tree, Some(&advice))
                    .expect("the advice's tree exists");
                crate::output::out!("{chart}");
                Ok(())
            }
            _ => emit(format, &advice, || kb.advice_text(&advice)),
        }
    }

    fn knowledge_base(&self) -> anyhow::Result<KnowledgeBase> {
        let Some(path) = &self.kb else {
            return Ok(KnowledgeBase::embedded());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| UsageError(format!("cannot read --kb {}: {err}", path.display())))?;
        KnowledgeBase::parse(&text, &path.display().to_string())
            .map_err(|err| UsageError(err.to_string()).into())
    }

    fn answers(&self) -> Result<Answers, UsageError> {
        let mut answers = Answers::new();
        let named = [
            ("security", &self.security),
            ("performance", &self.performance),
            ("startup", &self.startup),
            ("iteration", &self.iteration),
            ("storage", &self.storage),
        ];
        for (dimension, level) in named {
            if let Some(level) = level {
                answers.insert(dimension.to_string(), level.clone());
            }
        }
        for pair in &self.set {
            let (dimension, level) = pair.split_once('=').ok_or_else(|| {
                UsageError(format!(
                    "--set {pair:?} must be DIMENSION=LEVEL, such as state=stateful"
                ))
            })?;
            answers.insert(dimension.trim().to_string(), level.trim().to_string());
        }
        Ok(answers)
    }

    async fn profile(&self, name: &str) -> anyhow::Result<FunctionProfile> {
        let client = self.server.client()?;
        let function = client
            .function(name)
            .await
            .with_context(|| format!("cannot read function {name:?}"))?;
        let config = &function.config;
        let cold = function.stats.last_cold_start_ms;
        Ok(FunctionProfile {
            name: function.name.clone(),
            requirements: config.requirements.clone(),
            memory_bytes: config.limits.memory_bytes,
            timeout_ms: config.limits.timeout_ms,
            fuel: config.limits.cpu_fuel,
            allowed_outbound_hosts: config
                .sections
                .get("allowed_outbound_hosts")
                .and_then(|hosts| serde_json::from_value(hosts.clone()).ok())
                .unwrap_or_default(),
            last_cold_start_ms: (cold > 0.0).then_some(cold),
        })
    }
}

fn emit<T: serde::Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(value),
        _ => {
            crate::output::out!("{}", text());
            Ok(())
        }
    }
}

/// Questions on the terminal: the levels, the suggestion in brackets, Enter keeps it.
struct Terminal;

impl Prompt for Terminal {
    fn ask(
        &mut self,
        dimension: &str,
        question: &str,
        levels: &[String],
        suggestion: Option<&str>,
    ) -> Option<String> {
        let stdin = std::io::stdin();
        loop {
            let hint = suggestion.map_or(String::new(), |s| format!(" [{s}]"));
            eprint!("{question} ({}){hint}: ", levels.join(", "));
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            // End of input keeps the suggestion for this and every later question.
            if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
                eprintln!();
                return None;
            }
            let answer = line.trim();
            if answer.is_empty() {
                return None;
            }
            if levels.iter().any(|l| l == answer) {
                return Some(answer.to_string());
            }
            eprintln!("{dimension} must be one of {}", levels.join(", "));
        }
    }
}
