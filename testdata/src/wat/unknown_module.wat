;; unknown_module.wasm — FunLess ABI v1 plus an import from a module the host
;; does not provide, env.host_secret (tests instantiation failure).
(module
  (import "env" "host_secret" (func $host_secret (result i32)))
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "{}")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (drop (call $host_secret))
    (call $insert_response (i32.const 256) (i32.const 2))
    (i32.const 0)))
