//! Traces: the calls to replay and what each function costs to keep.
//!
//! Two public formats are read:
//! - **Azure Functions 2019** (Shahrad et al., ATC 2020), in each layout it is published in:
//!   the release itself (`invocations_per_function_md.anon.d01.csv` with
//!   `HashOwner,HashApp,HashFunction,Trigger,1,...,1440`), vHive invitro's samples
//!   (`invocations.csv` with `HashOwner,HashApp,HashFunction,Trigger,480,481,...`, and
//!   `durations.csv`, `memory.csv` keyed by function), and samples with
//!   `HashFunction,HashOwner,HashApp,minute_1,...`. Columns are found by name; every column
//!   named by a number or `minute_N` is a minute, in order, and the first one is the start of
//!   the replay. A directory may also hold the durations (average per function, ms) and memory
//!   (average allocated MB, per function or per app) files, or the invocations file is given
//!   alone. The trace gives counts per minute, so the `n` calls of a minute are spread evenly
//!   over it.
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
            let invocations = find(path, &["invocations_per_function", "invocations"])?
                .ok_or_else(|| TraceError::Format {
                    path: path.to_path_buf(),
                    problem: "no invocations_per_function*.csv or invocations*.csv in this \
                              directory (expected the Azure 2019 files, or give a file)"
                        .into(),
                })?;
            let durations = find(path, &["function_durations_percentiles", "durations"])?;
            let memory = find(path, &["app_memory_percentiles", "memory"])?;
            return azure2019(
                &invocations,
                durations.as_deref(),
                memory.as_deref(),
                default_memory_mb,
            );
        }
        let text = read(path)?;
        let header = text.lines().next().unwrap_or("");
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        if columns.contains(&"HashFunction") && columns.contains(&"HashApp") {
            azure2019(path, None, None, default_memory_mb)
        } else if header.trim() == "app,func,end_timestamp,duration" {
            azure2021(path, &text, default_memory_mb)
        } else {
            Err(TraceError::Format {
                path: path.to_path_buf(),
                problem: format!(
                    "unknown header {:?}: expected an Azure 2019 invocations file \
                     (HashOwner,HashApp,HashFunction,Trigger,1,2,...) or an Azure 2021 file \
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
    std::fs::read_to_string(path).map_err(|error| TraceError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// The first file in `dir` (by name) whose name starts with one of `prefixes`, tried in order,
/// and ends in `.csv`.
fn find(dir: &Path, prefixes: &[&str]) -> Result<Option<PathBuf>, TraceError> {
    let entries = std::fs::read_dir(dir).map_err(|error| TraceError::Read {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut names: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    Ok(prefixes.iter().find_map(|prefix| {
        names
            .iter()
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".csv"))
            })
            .cloned()
    }))
}

/// The columns that name a function in the Azure 2019 files, coarsest first.
const KEY_COLUMNS: [&str; 3] = ["HashOwner", "HashApp", "HashFunction"];

/// How a file keys its rows: by the owner, app and function columns it has.
struct Key(Vec<(usize, usize)>);

impl Key {
    /// The key columns `rows` has, among those `names` (the invocations file's columns) has.
    fn of(rows: &Rows<'_>, names: &[&str]) -> Self {
        Self(
            KEY_COLUMNS
                .iter()
                .filter_map(|column| {
                    let here = rows.columns.iter().position(|c| c == column)?;
                    let there = names.iter().position(|c| c == column)?;
                    Some((here, there))
                })
                .collect(),
        )
    }

    /// The key of a row of the file it was made for.
    fn here(&self, fields: &[&str]) -> String {
        self.join(fields, |(here, _)| *here)
    }

    /// The key of a row of the invocations file.
    fn there(&self, fields: &[&str]) -> String {
        self.join(fields, |(_, there)| *there)
    }

    fn join(&self, fields: &[&str], pick: impl Fn(&(usize, usize)) -> usize) -> String {
        self.0
            .iter()
            .map(|pair| fields.get(pick(pair)).copied().unwrap_or("").trim())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Whether a column is a minute: a number (`480`) or `minute_N`.
fn is_minute(column: &str) -> bool {
    let digits = column.strip_prefix("minute_").unwrap_or(column);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
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
    let text = read(invocations)?;
    let rows = Rows::new(invocations, &text);
    let function_column = rows.column("HashFunction")?;
    let names = rows.columns.clone();
    let minute_columns: Vec<usize> = (0..names.len()).filter(|&i| is_minute(names[i])).collect();
    if minute_columns.is_empty() {
        return Err(TraceError::Format {
            path: invocations.to_path_buf(),
            problem: "no minute columns (named 1, 2, ... or minute_1, minute_2, ...) after \
                      the hash columns"
                .into(),
        });
    }

    // Average duration and memory, keyed as each file keys them.
    let averages = |path: &Path, column: &str| -> Result<(Key, HashMap<String, f64>), TraceError> {
        let text = read(path)?;
        let mut rows = Rows::new(path, &text);
        let key = Key::of(&rows, &names);
        if key.0.is_empty() {
            return Err(TraceError::Format {
                path: path.to_path_buf(),
                problem: "no HashOwner, HashApp or HashFunction column to match the \
                          invocations by"
                    .into(),
            });
        }
        let value = rows.column(column)?;
        let mut averages = HashMap::new();
        while let Some((line, fields)) = rows.next() {
            let average = rows.number(line, &fields, value)?;
            averages.insert(key.here(&fields), average);
        }
        Ok((key, averages))
    };
    let durations = durations
        .map(|path| averages(path, "Average"))
        .transpose()?;
    let memory = memory
        .map(|path| averages(path, "AverageAllocatedMb"))
        .transpose()?;
    let lookup = |table: &Option<(Key, HashMap<String, f64>)>, fields: &[&str]| {
        table
            .as_ref()
            .and_then(|(key, values)| values.get(&key.there(fields)).copied())
    };

    let mut functions = Vec::new();
    let mut calls = Vec::new();
    let mut rows = rows;
    while let Some((line, fields)) = rows.next() {
        if fields.len() != names.len() {
            return Err(rows.error(
                line,
                format!("{} fields, the header has {}", fields.len(), names.len()),
            ));
        }
        let name = fields[function_column].to_string();
        let index = functions.len() as u32;
        let duration = lookup(&durations, &fields).unwrap_or(0.0).round() as Millis;
        for (minute, &column) in minute_columns.iter().enumerate() {
            let n = rows.number(line, &fields, column)? as u64;
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
            memory_mb: lookup(&memory, &fields).unwrap_or(default_memory_mb),
            name,
        });
    }
    calls.sort_by_key(|c| c.at);
    Ok(Trace {
        source: format!("{} (Azure 2019)", invocations.display()),
        functions,
        calls,
        span: minute_columns.len() as Millis * MINUTE,
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
