;; logflood.wasm — FunLess ABI v1; calls __console_log 100000 times with the
;; same 100-byte line (10 MB of logs in total), then responds {} and returns 0
;; (tests log size limits / truncation).
(module
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (import "fl_imps" "__console_log" (func $console_log (param i32 i32)))
  (memory (export "memory") 1)
  ;; 100 bytes: "0123456789" ten times
  (data (i32.const 256)
    "0123456789012345678901234567890123456789"
    "0123456789012345678901234567890123456789"
    "01234567890123456789")
  (data (i32.const 512) "{}")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (local $i i32)
    (loop $again
      (call $console_log (i32.const 256) (i32.const 100))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 100000))))
    (call $insert_response (i32.const 512) (i32.const 2))
    (i32.const 0)))
