;; stdio_log.wasm — legacy ABI (WASI command); writes to stderr, in three
;; writes, "err one\nerr t", "wo\r\n" and "err three" (no newline at the end),
;; and "{}" to stdout between the last two; exits 0. Tests the stderr log
;; stream: lines split across writes, "\r\n", and a last line without its
;; newline.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "err one\nerr t") ;; 13 bytes
  (data (i32.const 272) "wo\r\n")         ;; 4
  (data (i32.const 288) "err three")      ;; 9
  (data (i32.const 304) "{}")             ;; 2
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (call $write (i32.const 2) (i32.const 256) (i32.const 13))
    (call $write (i32.const 2) (i32.const 272) (i32.const 4))
    (call $write (i32.const 1) (i32.const 304) (i32.const 2))
    (call $write (i32.const 2) (i32.const 288) (i32.const 9))))
