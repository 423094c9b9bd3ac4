//! A WASI preview 1 reactor-style core module: it exports a function but has no `_start`,
//! so it is neither a component nor a WAGI command.

/// Adds two numbers; exists only so that the module exports something.
#[unsafe(no_mangle)]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
