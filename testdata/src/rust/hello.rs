// hello_rust.wasm — Wisp test fixture, legacy ABI (plain WASI command).
//
// Reads a JSON object from stdin, finds the string value of the top-level key
// "name" with a small hand-written scanner and prints
// {"payload":"Hello <name>!"} to stdout with NO trailing newline.
// Without a string-valued "name" it prints {"payload":"Hello World!"}.
// The name's JSON string contents are copied verbatim (escapes included).

use std::io::{self, Read, Write};
use std::process;

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t' || c == b'\n' || c == b'\r'
}

/// Index of the closing quote of a string whose contents start at `p`.
fn skip_string(s: &[u8], mut p: usize) -> Option<usize> {
    while p < s.len() {
        match s[p] {
            b'\\' => p += 2,
            b'"' => return Some(p),
            _ => p += 1,
        }
    }
    None
}

fn find_name(s: &[u8]) -> Option<&[u8]> {
    let mut depth = 0i32;
    let mut p = 0usize;
    while p < s.len() {
        match s[p] {
            b'{' | b'[' => {
                depth += 1;
                p += 1;
            }
            b'}' | b']' => {
                depth -= 1;
                p += 1;
            }
            b'"' => {
                let b = p + 1;
                let e = skip_string(s, b)?;
                p = e + 1;
                while p < s.len() && is_ws(s[p]) {
                    p += 1;
                }
                if p >= s.len() || s[p] != b':' {
                    continue; // a string value, not a key
                }
                p += 1;
                if depth != 1 || &s[b..e] != b"name" {
                    continue;
                }
                while p < s.len() && is_ws(s[p]) {
                    p += 1;
                }
                if p >= s.len() || s[p] != b'"' {
                    return None; // "name" present but not a string
                }
                let vb = p + 1;
                let ve = skip_string(s, vb)?;
                return Some(&s[vb..ve]);
            }
            _ => p += 1,
        }
    }
    None
}

fn main() {
    let mut input = Vec::new();
    if io::stdin().read_to_end(&mut input).is_err() {
        eprint!("cannot read stdin");
        process::exit(1);
    }
    let name: &[u8] = find_name(&input).unwrap_or(b"World");
    let mut out = Vec::with_capacity(name.len() + 32);
    out.extend_from_slice(b"{\"payload\":\"Hello ");
    out.extend_from_slice(name);
    out.extend_from_slice(b"!\"}");
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if lock.write_all(&out).and_then(|_| lock.flush()).is_err() {
        process::exit(1);
    }
}
