;; log3.wasm — FunLess ABI v1; hello_wat with three __console_log lines:
;; logs "checking input", "greeting Ada", "done" and responds
;; {"payload":"Hello Ada!"}; the logging twin of hello_wat (the cost of logs).
(module
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (import "fl_imps" "__console_log" (func $console_log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "checking input")
  (data (i32.const 160) "greeting Ada")
  (data (i32.const 192) "done")
  (data (i32.const 256) "{\"payload\":\"Hello Ada!\"}")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (call $console_log (i32.const 128) (i32.const 14))
    (call $console_log (i32.const 160) (i32.const 12))
    (call $console_log (i32.const 192) (i32.const 4))
    (call $insert_response (i32.const 256) (i32.const 24))
    (i32.const 0)))
