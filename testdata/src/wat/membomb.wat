;; membomb.wasm — FunLess ABI v1; __invoke grows memory 1 MiB (16 pages) at a
;; time until memory.grow fails (-1), then aborts with `unreachable`, like a
;; real allocator on OOM. Memory starts at 1 page and declares no maximum,
;; so only the host's memory limit stops it (tests memory limits).
(module
  (memory (export "memory") 1)
  (func (export "__invoke") (param $input_len i32) (result i32)
    (loop $grow
      (br_if $grow
        (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (unreachable)))
