;; trap.wasm — FunLess ABI v1; __invoke divides by zero (i32.div_s), a trap.
(module
  (memory (export "memory") 1)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (i32.div_s (local.get $input_len) (i32.const 0))))
