;; table_grow_max.wasm — hostile. Like table_grow.wasm but the table
;; declares a maximum of 2^27 entries (1 GiB of host pointers, 2 GiB while
;; growing): over the table_entries limit, so refused at upload.
(module
  (table $t 1 134217728 funcref)
  (memory (export "memory") 1)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (drop (table.grow $t (ref.null func) (i32.const 134217727)))
    (i32.const 0)))
