//! Traces: the calls to replay and what each function costs to keep.
//!
//! Two public formats are read:
//! - **Azure Functions 2019** (Shahrad et al., ATC 2020): a directory holding
//!   `invocations_per_function*.csv` (`HashFunction,HashOwner,HashApp,1..N` or `minute_1..N`:
//!   calls per minute) and optionally `function_durations_percentiles*.csv` (average duration
//!   per function, ms) and `app_memory_percentiles*.csv` (average allocated memory per app,
//!   MB), or the invocations file alone. The trace gives counts per minute, so the `n` calls of
//!   a minute are spread evenly over it.
//! - **Azure Functions 2021** (per invocation): a file `app,func,end_timestamp,duration` with
//!   seconds from the start of the trace; a call starts at `end_timestamp - duration`.
//!
//! Functions without a memory figure get `default_memory_mb`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kindling_scheduler::Millis;
use serde::Serialize;

use crate::error::TraceError;

/// One function of a trace.
#[derive(Debug, Clone, Serialize)]
pub struct TraceFunction {
    /// Its name (the trace's hash).
    pub name: String,
    /// Memory it holds while resident, in MB.
    pub memory_mb: f64,
}

/// One call.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// When it starts, from the start of the trace.
    pub at: Millis,
    /// Index into [`Trace::functions`].
    pub function: u32,
    /// How long it runs.
    pub duration: Millis,
}

/// A trace ready to replay: calls sorted by start time.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Where it was read from and in which format.
    pub source: String,
    /// The functions.
    pub functions: Vec<TraceFunction>,
    /// The calls, by start time.
    pub calls: Vec<Call>,
    /// How long the trace lasts.
    pub span: Millis,
}

impl Trace {
    /// Reads an Azure 2019 directory or invocations file, or an Azure 2021 file, telling them
    /// apart by their headers.
    pub fn load(path: &Path, default_memory_mb: f64) -> Result<Self, TraceError> {
        if path.is_dir() {
            let invocations =
                find(path, "invocations_per_function")?.ok_or_else(|| TraceError::Format {
                    path: path.to_path_buf(),
                    problem: "no invocations_per_function*.csv in this directory (expected \
                              the Azure 2019 files, or give a file)"
                        .into(),
                })?;
            let durations = find(path, "function_durations_percentiles")?;
            let memory = find(path, "app_memory_percentiles")?;
            return azure2019(
                &invocations,
                durations.as_deref(),
                memory.as_deref(),
                default_memory_mb,
            );
        }
        let text = read(path)?;
        let header = text.lines().next().unwrap_or("");
        if header.starts_with("HashFunction,HashOwner,HashApp,") {
            azure2019(path, None, None, default_memory_mb)
        } else if header.trim() == "app,func,end_timestamp,duration" {
            azure2021(path, &text, default_memory_mb)
        } else {
            Err(TraceError::Format {
                path: path.to_path_buf(),
                problem: format!(
                    "unknown header {:?}: expected an Azure 2019 invocations file \
                     (HashFunction,HashOwner,HashApp,...) or an Azure 2021 file \
                     (app,func,end_timestamp,duration)",
                    truncate(header)
                ),
            })
        }
    }

    /// All calls.
    pub fn invocations(&self) -> u64 {
        self.calls.len() as u64
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn read(path: &Path) -> Result<String, TraceError> {
    std::fs::read_to_string(path).map_err(|source| TraceError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The file in `dir` whose name starts with `prefix` and ends in `.csv`.
fn find(dir: &Path, prefix: &str) -> Result<Option<PathBuf>, TraceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TraceError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".csv"))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

/// A CSV of plain fields (the Azure files quote nothing), with the line numbers for errors.
struct Rows<'a> {
    path: &'a Path,
    columns: Vec<&'a str>,
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
}

impl<'a> Rows<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        let mut lines = text.lines().enumerate();
        let columns = lines
            .next()
            .map(|(_, header)| header.split(',').map(str::trim).collect())
            .unwrap_or_default();
        Self {
            path,
            columns,
            lines,
        }
    }

    fn column(&self, name: &str) -> Result<usize, TraceError> {
        self.columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| TraceError::Format {
                path: self.path.to_path_buf(),
                problem: format!("no {name:?} column in the header"),
            })
    }

    fn error(&self, line: usize, problem: String) -> TraceError {
        TraceError::Line {
            path: self.path.to_path_buf(),
            line: line + 1,
            problem,
        }
    }

    fn number(&self, line: usize, fields: &[&str], index: usize) -> Result<f64, TraceError> {
        let field = fields.get(index).copied().unwrap_or("");
        match field.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(self.error(
                line,
                format!(
                    "column {:?}: {field:?} is not a number >= 0",
                    self.columns.get(index).copied().unwrap_or("?")
                ),
            )),
        }
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = (usize, Vec<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (index, line) = self.lines.next()?;
            if !line.trim().is_empty() {
                return Some((index, line.split(',').collect()));
            }
        }
    }
}

const MINUTE: Millis = 60_000;

fn azure2019(
    invocations: &Path,
    durations: Option<&Path>,
    memory: Option<&Path>,
    default_memory_mb: f64,
) -> Result<Trace, TraceError> {
    // Average duration per function and memory per app, when given.
    let mut duration_ms: HashMap<String, f64> = HashMap::new();
    if let Some(path) = durations {
        let text = read(path)?;
        let rows = Rows::new(path, &text);
        let (function, average) = (rows.column("HashFunction")?, rows.column("Average")?);
        let mut rows = rows;
        while let Some((line, fields)) = rows.next() {
            let value = rows.number(line, &fields, average)?;
            duration_ms.insert(fields.get(function).unwrap_or(&"").to_string(), value);
        }
    }
    let mut memory_mb: HashMap<String, f64> = HashMap::new();
    if let Some(path) = memory {
        let text = read(path)?;
        let rows = Rows::new(path, &text);
        let (app, average) = (rows.column("HashApp")?, rows.column("AverageAllocatedMb")?);
        let mut rows = rows;
        while let Some((line, fields)) = rows.next() {
            let value = rows.number(line, &fields, average)?;
            memory_mb.insert(fields.get(app).unwrap_or(&"").to_string(), value);
        }
    }

    let text = read(invocations)?;
    let rows = Rows::new(invocations, &text);
    let (function_column, app_column) = (rows.column("HashFunction")?, rows.column("HashApp")?);
    let first_minute = 3;
    let minutes = rows.columns.len().saturating_sub(first_minute);
    if minutes == 0 {
        return Err(TraceError::Format {
            path: invocations.to_path_buf(),
            problem: "no minute columns after HashFunction,HashOwner,HashApp".into(),
        });
    }
    let mut functions = Vec::new();
    let mut calls = Vec::new();
    let mut rows = rows;
    while let Some((line, fields)) = rows.next() {
        if fields.len() != rows.columns.len() {
            return Err(rows.error(
                line,
                format!(
                    "{} fields, the header has {}",
                    fields.len(),
                    rows.columns.len()
                ),
            ));
        }
        let name = fields[function_column].to_string();
        let app = fields[app_column];
        let index = functions.len() as u32;
        let duration = duration_ms.get(&name).copied().unwrap_or(0.0).round() as Millis;
        for minute in 0..minutes {
            let n = rows.number(line, &fields, first_minute + minute)? as u64;
            for i in 0..n {
                // Evenly over the minute: the trace says nothing finer.
                let at = minute as Millis * MINUTE + (2 * i + 1) * MINUTE / (2 * n);
                calls.push(Call {
                    at,
                    function: index,
                    duration,
                });
            }
        }
        functions.push(TraceFunction {
            memory_mb: memory_mb.get(app).copied().unwrap_or(default_memory_mb),
            name,
        });
    }
    calls.sort_by_key(|c| c.at);
    Ok(Trace {
        source: format!("{} (Azure 2019)", invocations.display()),
        functions,
        calls,
        span: minutes as Millis * MINUTE,
    })
}

fn azure2021(path: &Path, text: &str, default_memory_mb: f64) -> Result<Trace, TraceError> {
    let rows = Rows::new(path, text);
    let (app, func, end, duration) = (
        rows.column("app")?,
        rows.column("func")?,
        rows.column("end_timestamp")?,
        rows.column("duration")?,
    );
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut functions = Vec::new();
    let mut calls = Vec::new();
    let mut span: Millis = 0;
    let mut rows = rows;
    while let Some((line, fields)) = rows.next() {
        let end_s = rows.number(line, &fields, end)?;
        let duration_s = rows.number(line, &fields, duration)?;
        let name = format!(
            "{}/{}",
            fields.get(app).unwrap_or(&""),
            fields.get(func).unwrap_or(&"")
        );
        let function = *index.entry(name.clone()).or_insert_with(|| {
            functions.push(TraceFunction {
                name,
                memory_mb: default_memory_mb,
            });
            functions.len() as u32 - 1
        });
        let end_ms = (end_s * 1e3).round() as Millis;
        let duration = (duration_s * 1e3).round() as Millis;
        span = span.max(end_ms);
        calls.push(Call {
            at: end_ms.saturating_sub(duration),
            function,
            duration,
        });
    }
    calls.sort_by_key(|c| c.at);
    Ok(Trace {
        source: format!("{} (Azure 2021)", path.display()),
        functions,
        calls,
        span: span.div_ceil(MINUTE) * MINUTE,
    })
}
