// echo_rust.wasm — Wisp test fixture, legacy ABI (plain WASI command).
// Copies all of stdin to stdout unchanged.

use std::io::{self, Read, Write};
use std::process;

fn main() {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut input = stdin.lock();
    let mut output = stdout.lock();
    let mut buf = [0u8; 16384];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(ref e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => process::exit(1),
        };
        if output.write_all(&buf[..n]).is_err() {
            process::exit(1);
        }
    }
    if output.flush().is_err() {
        process::exit(1);
    }
}
