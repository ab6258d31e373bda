;; table_grow.wasm — hostile. __invoke grows a funcref table that declares no
;; maximum by 2^32-1 entries: in wazero a table is a slice of pointers, so
;; this asks the host for 32 GiB outside the guest's linear memory (and the
;; memory cap). Must be refused before anything runs it: a module that uses
;; table.grow must give every table a small maximum.
(module
  (table $t 1 funcref)
  (memory (export "memory") 1)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (drop (table.grow $t (ref.null func) (i32.const -1)))
    (i32.const 0)))
