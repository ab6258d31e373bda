;; http_badptr.wasm — FunLess ABI v1; calls __http_request (GET, no headers,
;; no body) for the URL taken from {"u":"<url>"} exactly as http.wasm does, but
;; with resp_ptr = 0xFFFFFFF0 and resp_len_ptr = 0xFFFFFFF8, both outside the
;; 1-page memory (so no capacity can be stored there either). The host must
;; not write outside guest memory. If the call returns, responds {} and 0.
(module
  (import "fl_imps" "__get_input_data" (func $get_input_data (param i32)))
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $insert_error (param i32 i32)))
  (import "fl_imps" "__http_request"
    (func $http_request (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x300) "{}")
  (data (i32.const 0x320) "bad input")
  (func (export "__invoke") (param $input_len i32) (result i32)
    (if (i32.or (i32.lt_s (local.get $input_len) (i32.const 8))
                (i32.gt_s (local.get $input_len) (i32.const 0x7000)))
      (then
        (call $insert_error (i32.const 0x320) (i32.const 9))
        (return (i32.const 1))))
    (call $get_input_data (i32.const 0x1000))
    (call $http_request
      (i32.const 0xFFFFFFF0)                              ;; resp_ptr (out of bounds)
      (i32.const 0xFFFFFFF8)                              ;; resp_len_ptr (out of bounds)
      (i32.const 0x10)                                    ;; status_ptr
      (i32.const 0)                                       ;; method: GET
      (i32.const 0x1006)                                  ;; uri_ptr
      (i32.sub (local.get $input_len) (i32.const 8))      ;; uri_len
      (i32.const 0) (i32.const 0)                         ;; no headers
      (i32.const 0) (i32.const 0))                        ;; no body
    (call $insert_response (i32.const 0x300) (i32.const 2))
    (i32.const 0)))
