;; guest_error.wasm — FunLess ABI v1; reports "something went wrong" through
;; __insert_error and returns 1 (tests function-reported errors).
(module
  (import "fl_imps" "__insert_error" (func $insert_error (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "something went wrong")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (call $insert_error (i32.const 256) (i32.const 20))
    (i32.const 1)))
