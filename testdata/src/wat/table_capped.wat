;; table_capped.wasm — FunLess ABI v1, legitimate. A funcref table of 1
;; entry with a maximum of 1000: __invoke grows it by 999 (allowed: table.grow
;; returns the old size, 1), then by 1 more (past the maximum: table.grow
;; returns -1), and responds {"grown":true} when both answers are as the spec
;; says, else reports an error. The table's 1000 entries count against the
;; invocation's memory cap.
(module
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $err (param i32 i32)))
  (table $t 1 1000 funcref)
  (memory (export "memory") 1)
  (data (i32.const 256) "{\"grown\":true}")
  (data (i32.const 512) "table.grow answered wrongly")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (if (i32.and
          (i32.eq (table.grow $t (ref.null func) (i32.const 999)) (i32.const 1))
          (i32.eq (table.grow $t (ref.null func) (i32.const 1)) (i32.const -1)))
      (then
        (call $resp (i32.const 256) (i32.const 14))
        (return (i32.const 0))))
    (call $err (i32.const 512) (i32.const 27))
    (i32.const 1)))
