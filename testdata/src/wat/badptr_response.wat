;; badptr_response.wasm — FunLess ABI v1; calls __insert_response with an
;; out-of-bounds pointer (0x7FFFFFFF, 100) and returns 0. The host must not
;; read outside guest memory (tests host-side bounds checks).
(module
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (call $insert_response (i32.const 0x7FFFFFFF) (i32.const 100))
    (i32.const 0)))
