;; noexport.wasm — exports memory and "hello" but neither __invoke nor _start
;; (tests ABI detection: neither FunLess ABI nor legacy WASI command).
(module
  (memory (export "memory") 1)
  (func (export "hello") (result i32)
    (i32.const 42)))
