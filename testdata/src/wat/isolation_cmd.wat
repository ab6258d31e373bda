;; isolation_cmd.wasm — legacy ABI (WASI command): isolation.wasm's checks
;; and markers in _start. Reports whether it starts from the state a fresh
;; instance has, then leaves markers everywhere a later call could
;; see them. 20 pages (1.25 MiB, past the pool's direct-clear size, so the
;; page-level reset is what clears it), a mutable global, a data segment,
;; a table, and one page grown per call.
;;
;; Writes {"clean":"11111111"} to stdout: each character is one check, 1
;; when the state is a fresh instance's, 0 when a previous call's marker shows:
;;   0 global $g is 7            4 memory.size is 20 pages
;;   1 data byte at 1024 is 'D'  5 table slot 1 is null
;;   2 i32 at 4096 (bss) is 0    6 a freshly grown page reads 0
;;   3 i32 in page 17 is 0       7 the last byte of page 19 is 0
;; Then sets $g to 99, overwrites all those bytes, fills table slot 1,
;; writes into the grown page (which a fresh instance does not have), and
;; fills memory from 8192 to the end of page 19 with 0xAB (so the regions it
;; used are dense: see agent/runtime's memoryPool).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (global $g (mut i32) (i32.const 7))
  (table 2 funcref)
  (elem (i32.const 0) $dummy)
  (func $dummy)
  (data (i32.const 1024) "D")
  (data (i32.const 2048) "{\"clean\":\"........\"}")
  (func $mark (param $i i32) (param $ok i32)
    (i32.store8 (i32.add (i32.const 2058) (local.get $i))
      (select (i32.const 49) (i32.const 48) (local.get $ok))))
  (func (export "_start")
    (local $old i32)
    (call $mark (i32.const 0) (i32.eq (global.get $g) (i32.const 7)))
    (call $mark (i32.const 1) (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 68)))
    (call $mark (i32.const 2) (i32.eqz (i32.load (i32.const 4096))))
    (call $mark (i32.const 3) (i32.eqz (i32.load (i32.const 1114235))))
    (call $mark (i32.const 4) (i32.eq (memory.size) (i32.const 20)))
    (call $mark (i32.const 5) (ref.is_null (table.get 0 (i32.const 1))))
    (local.set $old (memory.grow (i32.const 1)))
    (call $mark (i32.const 6)
      (i32.and (i32.ne (local.get $old) (i32.const -1))
               (i32.eqz (i32.load (i32.mul (local.get $old) (i32.const 65536))))))
    (call $mark (i32.const 7) (i32.eqz (i32.load8_u (i32.const 1310719))))
    (i32.store (i32.const 3072) (i32.const 2048))
    (i32.store (i32.const 3076) (i32.const 20))
    (drop (call $fd_write (i32.const 1) (i32.const 3072) (i32.const 1) (i32.const 3080)))
    (global.set $g (i32.const 99))
    (i32.store8 (i32.const 1024) (i32.const 88))
    (i32.store (i32.const 4096) (i32.const -1))
    (i32.store (i32.const 1114235) (i32.const -1))
    (i32.store8 (i32.const 1310719) (i32.const 255))
    (if (i32.ne (local.get $old) (i32.const -1))
      (then (i32.store (i32.mul (local.get $old) (i32.const 65536)) (i32.const -1))))
    (table.set 0 (i32.const 1) (ref.func $dummy))
    (memory.fill (i32.const 8192) (i32.const 0xAB) (i32.const 1302528))
))
