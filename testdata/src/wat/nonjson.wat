;; nonjson.wasm — FunLess ABI v1; responds with bytes that are not JSON
;; ("not json at all") and returns 0 (tests output validation).
(module
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "not json at all")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (call $insert_response (i32.const 256) (i32.const 15))
    (i32.const 0)))
