;; unknown_import.wasm — FunLess ABI v1 plus an import the host does not
;; provide, fl_imps.__launch_missiles (tests instantiation failure).
(module
  (import "fl_imps" "__get_input_data" (func $get_input_data (param i32)))
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $insert_error (param i32 i32)))
  (import "fl_imps" "__console_log" (func $console_log (param i32 i32)))
  (import "fl_imps" "__launch_missiles" (func $launch_missiles (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "{}")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (call $launch_missiles (i32.const 42))
    (call $insert_response (i32.const 256) (i32.const 2))
    (i32.const 0)))
