// hello_fl_rust.wasm — Wisp test fixture, FunLess Wasm function ABI v1, written
// the way FunLess's Rust guests are: a cdylib exporting __invoke that parses its
// input into a JSON value, reads "name", and answers {"payload":"Hello <name>!"}.
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[link(wasm_import_module = "fl_imps")]
extern "C" {
    fn __get_input_data(ptr: *mut u8);
    fn __insert_response(ptr: *const u8, len: u32);
    fn __insert_error(ptr: *const u8, len: u32);
}

enum Value {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Value>),
    Obj(BTreeMap<String, Value>),
}

struct Parser<'a> { s: &'a [u8], p: usize }

impl<'a> Parser<'a> {
    fn ws(&mut self) { while self.p < self.s.len() && matches!(self.s[self.p], b' ' | b'\t' | b'\n' | b'\r') { self.p += 1; } }
    fn err<T>(&self, what: &str) -> Result<T, String> { Err(format!("{} at byte {}", what, self.p)) }
    fn value(&mut self, depth: u32) -> Result<Value, String> {
        if depth > 64 { return self.err("nesting too deep"); }
        self.ws();
        match self.s.get(self.p) {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.p += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s.get(self.p) == Some(&b'}') { self.p += 1; return Ok(Value::Obj(m)); }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if self.s.get(self.p) != Some(&b':') { return self.err("expected ':'"); }
                    self.p += 1;
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                    self.ws();
                    match self.s.get(self.p) { Some(b',') => self.p += 1, Some(b'}') => { self.p += 1; return Ok(Value::Obj(m)); } _ => return self.err("expected ',' or '}'") }
                }
            }
            Some(b'[') => {
                self.p += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s.get(self.p) == Some(&b']') { self.p += 1; return Ok(Value::Arr(a)); }
                loop {
                    a.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.p) { Some(b',') => self.p += 1, Some(b']') => { self.p += 1; return Ok(Value::Arr(a)); } _ => return self.err("expected ',' or ']'") }
                }
            }
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') if self.s[self.p..].starts_with(b"true") => { self.p += 4; Ok(Value::Bool(true)) }
            Some(b'f') if self.s[self.p..].starts_with(b"false") => { self.p += 5; Ok(Value::Bool(false)) }
            Some(b'n') if self.s[self.p..].starts_with(b"null") => { self.p += 4; Ok(Value::Null) }
            Some(_) => {
                let b = self.p;
                while self.p < self.s.len() && matches!(self.s[self.p], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') { self.p += 1; }
                let t = std::str::from_utf8(&self.s[b..self.p]).map_err(|e| e.to_string())?;
                t.parse::<f64>().map(Value::Num).or_else(|_| self.err("bad number"))
            }
        }
    }
    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.p) != Some(&b'"') { return self.err("expected a string"); }
        self.p += 1;
        let mut out = String::new();
        loop {
            let c = match self.s.get(self.p) { Some(c) => *c, None => return self.err("unterminated string") };
            self.p += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = match self.s.get(self.p) { Some(e) => *e, None => return self.err("bad escape") };
                    self.p += 1;
                    match e {
                        b'"' => out.push('"'), b'\\' => out.push('\\'), b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'), b'f' => out.push('\u{c}'), b'n' => out.push('\n'),
                        b'r' => out.push('\r'), b't' => out.push('\t'),
                        b'u' => {
                            let h = self.s.get(self.p..self.p + 4).ok_or("short \\u escape")?;
                            let v = u32::from_str_radix(std::str::from_utf8(h).map_err(|e| e.to_string())?, 16).map_err(|e| e.to_string())?;
                            self.p += 4;
                            out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                _ => {
                    let b = self.p - 1;
                    let mut e = self.p;
                    while e < self.s.len() && self.s[e] != b'"' && self.s[e] != b'\\' { e += 1; }
                    out.push_str(std::str::from_utf8(&self.s[b..e]).map_err(|e| e.to_string())?);
                    self.p = e;
                }
            }
        }
    }
}

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""), '\\' => out.push_str("\\\\"), '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"), '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => { let _ = write!(out, "\\u{:04x}", c as u32); }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn run(input: &[u8]) -> Result<String, String> {
    let mut p = Parser { s: input, p: 0 };
    let v = p.value(0)?;
    let name = match &v {
        Value::Obj(m) => match m.get("name") { Some(Value::Str(s)) => s.clone(), _ => "World".to_string() },
        _ => return Err("input is not a JSON object".to_string()),
    };
    let mut out = String::from("{\"payload\":");
    quote(&format!("Hello {}!", name), &mut out);
    out.push('}');
    Ok(out)
}

#[no_mangle]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    let mut buf = vec![0u8; input_len.max(0) as usize];
    unsafe { __get_input_data(buf.as_mut_ptr()) };
    match run(&buf) {
        Ok(out) => { unsafe { __insert_response(out.as_ptr(), out.len() as u32) }; 0 }
        Err(e) => { let m = format!("invalid input: {}", e); unsafe { __insert_error(m.as_ptr(), m.len() as u32) }; 1 }
    }
}
