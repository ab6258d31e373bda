;; mem1m.wasm — FunLess ABI v1; 16 pages (1 MiB) of memory, min 16, no max.
;; __invoke fills the whole 1 MiB with 0x61 ('a') using memory.fill (bulk
;; memory), then responds {} (written after the fill) and returns 0
;; (tests that a function using exactly 1 MiB runs under a small limit).
(module
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (memory (export "memory") 16)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (memory.fill (i32.const 0) (i32.const 0x61) (i32.const 0x100000))
    ;; "{}" = bytes 0x7b 0x7d, stored little-endian as 0x7d7b
    (i32.store16 (i32.const 0) (i32.const 0x7d7b))
    (call $insert_response (i32.const 0) (i32.const 2))
    (i32.const 0)))
