//! A `wasi:cli/command` component: a valid component of the wrong world for an HTTP function.

fn main() {
    println!("I am a command, not an HTTP handler");
}
