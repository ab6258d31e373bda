// isolation_rust.wasm (FunLess ABI cdylib) and isolation_rust_cmd.wasm (WASI
// command, built with --cfg wisp_command) — Wisp test fixtures: what a
// Rust guest can see of the calls before it.
//
// Each call reports, before it allocates anything:
//   calls  a static counter (a fresh instance starts at 0);
//   dirty  how many bytes from __heap_base to the end of linear memory are
//          not zero (a fresh FunLess instance has 0 there: nothing ran
//          before __invoke; a command's std start-up allocates a little,
//          the same every time);
//   pages  linear memory's size in pages.
// Then it increments the counter and leaves 256 KiB of 0xAB on the heap.
// Output: {"calls":0,"dirty":0,"pages":17}.

#[cfg(not(wisp_command))]
#[link(wasm_import_module = "fl_imps")]
extern "C" {
    fn __insert_response(ptr: *const u8, len: u32);
}

extern "C" {
    static __heap_base: u8;
}

static mut CALLS: u32 = 0;

fn observe() -> String {
    let pages = core::arch::wasm32::memory_size(0);
    let start = unsafe { &__heap_base as *const u8 as usize };
    let end = pages * 65536;
    let mut dirty = 0usize;
    for p in start..end {
        // Reading linear memory the module owns: every address below
        // memory.size is valid in wasm.
        if unsafe { core::ptr::read_volatile(p as *const u8) } != 0 {
            dirty += 1;
        }
    }
    let calls = unsafe { CALLS };
    unsafe { CALLS += 1 };
    let out = format!("{{\"calls\":{},\"dirty\":{},\"pages\":{}}}", calls, dirty, pages);
    let marker = vec![0xABu8; 256 << 10];
    std::mem::forget(marker);
    out
}

#[cfg(not(wisp_command))]
#[no_mangle]
pub extern "C" fn __invoke(_input_len: i32) -> i32 {
    let out = observe();
    unsafe { __insert_response(out.as_ptr(), out.len() as u32) };
    0
}

#[cfg(wisp_command)]
fn main() {
    let out = observe();
    print!("{}", out);
}
