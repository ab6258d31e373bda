;; recurse.wasm — FunLess ABI v1; __invoke calls itself six times per level,
;; 64 levels deep: 6^64 calls, no loop anywhere (tests that a deadline stops
;; code that never loops).
(module
  (memory (export "memory") 1)
  (func $f (param $n i32)
    (if (i32.eqz (local.get $n)) (then (return)))
    (call $f (i32.sub (local.get $n) (i32.const 1)))
    (call $f (i32.sub (local.get $n) (i32.const 1)))
    (call $f (i32.sub (local.get $n) (i32.const 1)))
    (call $f (i32.sub (local.get $n) (i32.const 1)))
    (call $f (i32.sub (local.get $n) (i32.const 1)))
    (call $f (i32.sub (local.get $n) (i32.const 1))))
  (func (export "__invoke") (param $input_len i32) (result i32)
    (call $f (i32.const 64))
    (unreachable)))
