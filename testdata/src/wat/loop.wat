;; loop.wasm — FunLess ABI v1; __invoke never returns (tests wall-clock timeouts).
(module
  (memory (export "memory") 1)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (loop $forever
      (br $forever))
    (unreachable)))
