//! Printing results: aligned tables for people, JSON for programs (`--json`). Everything the
//! commands print goes through [`write`], which ends the process quietly (status 0) when the
//! reader has gone away, as `kindling ls | head -1` expects, instead of panicking on the
//! closed pipe.

use std::io::Write as _;

use serde::Serialize;

/// Like `print!`, through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}

/// Like `println!`, through [`write`].
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};

/// Writes to stdout. A closed pipe ends the process with status 0: the reader has what it
/// wanted. Any other failure to write is reported once and ends it with status 1.
pub(crate) fn write(text: std::fmt::Arguments<'_>) {
    if let Err(err) = std::io::stdout().lock().write_fmt(text) {
        quit_on(&err);
    }
}

/// Writes bytes to stdout, as [`write`].
pub(crate) fn write_bytes(bytes: &[u8]) {
    if let Err(err) = std::io::stdout().lock().write_all(bytes) {
        quit_on(&err);
    }
}

fn quit_on(err: &std::io::Error) -> ! {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("kindling: cannot write the output: {err}");
    std::process::exit(1);
}

/// Prints `value` as pretty JSON.
pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        outln!("{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `label: value` pairs with the values aligned.
pub(crate) fn print_fields(fields: &[(&str, String)]) {
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    for (label, value) in fields {
        outln!("{:<width$} {value}", format!("{label}:"));
    }
}
