;; tables_many.wasm — hostile. Seventeen tables of 2^20 entries each: one
;; more table than the default limit of 16 (and 136 MiB of host memory at
;; instantiation). Refused at upload, naming the tables limit.
(module
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (table 1048576 funcref) (table 1048576 funcref)
  (memory (export "memory") 1)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (i32.const 0)))
