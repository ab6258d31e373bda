;; stdioflood.wasm — FunLess ABI v1 with WASI stdio; floods its log every way
;; a guest can, in this order: __console_log "first"; __console_log one
;; 60,000-byte line of 'a'; one 64 MiB line of 'a' on stdout (2,048 writes of
;; 32 KiB, then "\n"); 200,000 lines "x\n" on stderr (one write each);
;; __console_log "last". Responds {} and returns 0 (tests that every byte
;; of the log counts against its bound).
(module
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (import "fl_imps" "__console_log" (func $console_log (param i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "first")
  (data (i32.const 272) "last")
  (data (i32.const 288) "{}")
  (data (i32.const 304) "\n")
  (data (i32.const 320) "x\n")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "__invoke") (param $input_len i32) (result i32)
    (local $i i32)
    ;; 60,000 bytes of 'a' at 1024
    (loop $fill
      (i32.store8 (i32.add (i32.const 1024) (local.get $i)) (i32.const 97))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 60000))))
    (call $console_log (i32.const 256) (i32.const 5))
    (call $console_log (i32.const 1024) (i32.const 60000))
    (local.set $i (i32.const 0))
    (loop $giant
      (call $write (i32.const 1) (i32.const 1024) (i32.const 32768))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $giant (i32.lt_u (local.get $i) (i32.const 2048))))
    (call $write (i32.const 1) (i32.const 304) (i32.const 1))
    (local.set $i (i32.const 0))
    (loop $tiny
      (call $write (i32.const 2) (i32.const 320) (i32.const 2))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $tiny (i32.lt_u (local.get $i) (i32.const 200000))))
    (call $console_log (i32.const 272) (i32.const 4))
    (call $insert_response (i32.const 288) (i32.const 2))
    (i32.const 0)))
