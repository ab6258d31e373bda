;; table_static.wasm — hostile. A table of 2^27 entries at instantiation
;; (1 GiB of host memory before __invoke runs), filled by __invoke. Over
;; the table_entries limit, so refused at upload.
(module
  (table $t 134217728 funcref)
  (memory (export "memory") 1)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (table.fill $t (i32.const 0) (ref.null func) (i32.const 134217728))
    (i32.const 0)))
