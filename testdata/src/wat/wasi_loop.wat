;; wasi_loop.wasm — legacy ABI (WASI command): exports _start and memory, has
;; no imports at all; _start loops forever (tests timeouts on the legacy path).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
