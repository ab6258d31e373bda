;; hello_wat.wasm — FunLess ABI v1, minimal baseline: ignores its input,
;; responds {"payload":"Hello Ada!"} and returns 0.
(module
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "{\"payload\":\"Hello Ada!\"}")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (call $insert_response (i32.const 256) (i32.const 24))
    (i32.const 0)))
