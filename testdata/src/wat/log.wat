;; log.wasm — FunLess ABI v1; logs "first line" then "second line" with
;; __console_log, responds {"logged":2} and returns 0 (tests log capture).
(module
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (import "fl_imps" "__console_log" (func $console_log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "first line")
  (data (i32.const 272) "second line")
  (data (i32.const 288) "{\"logged\":2}")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (call $console_log (i32.const 256) (i32.const 10))
    (call $console_log (i32.const 272) (i32.const 11))
    (call $insert_response (i32.const 288) (i32.const 12))
    (i32.const 0)))
