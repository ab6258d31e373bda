;; http_post.wasm — FunLess ABI v1; outbound HTTP POST through __http_request.
;;
;; Same input and answer handling as http.wasm, but method 1 (POST), headers
;;   Content-Type:application/json\nX-Wisp:a:b
;; (the X-Wisp value "a:b" contains a colon: split on the first ':' only) and
;; body {"ping":true}.
;;
;; Memory map: 0x10 status u16 | 0x14 resp_len u32 | 0x100 headers |
;;             0x200 body | 0x300 messages | 0x1000 input | 0x8000 response
(module
  (import "fl_imps" "__get_input_data" (func $get_input_data (param i32)))
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $insert_error (param i32 i32)))
  (import "fl_imps" "__http_request"
    (func $http_request (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x100) "Content-Type:application/json\0aX-Wisp:a:b")  ;; 40 bytes
  (data (i32.const 0x200) "{\"ping\":true}")                              ;; 13 bytes
  (data (i32.const 0x300) "transport failure")                            ;; 17 bytes
  (data (i32.const 0x320) "bad input")                                    ;; 9 bytes
  (func (export "__invoke") (param $input_len i32) (result i32)
    (if (i32.or (i32.lt_s (local.get $input_len) (i32.const 8))
                (i32.gt_s (local.get $input_len) (i32.const 0x7000)))
      (then
        (call $insert_error (i32.const 0x320) (i32.const 9))
        (return (i32.const 1))))
    (call $get_input_data (i32.const 0x1000))
    (i32.store (i32.const 0x14) (i32.const 4096))
    (i32.store16 (i32.const 0x10) (i32.const 0))
    (call $http_request
      (i32.const 0x8000)                                  ;; resp_ptr
      (i32.const 0x14)                                    ;; resp_len_ptr
      (i32.const 0x10)                                    ;; status_ptr
      (i32.const 1)                                       ;; method: POST
      (i32.const 0x1006)                                  ;; uri_ptr
      (i32.sub (local.get $input_len) (i32.const 8))      ;; uri_len
      (i32.const 0x100) (i32.const 40)                    ;; headers
      (i32.const 0x200) (i32.const 13))                   ;; body
    (if (i32.eqz (i32.load16_u (i32.const 0x10)))
      (then
        (call $insert_error (i32.const 0x300) (i32.const 17))
        (return (i32.const 1))))
    (call $insert_response (i32.const 0x8000) (i32.load (i32.const 0x14)))
    (i32.const 0)))
