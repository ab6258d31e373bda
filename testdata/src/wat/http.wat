;; http.wasm — FunLess ABI v1; outbound HTTP GET through __http_request.
;;
;; Input must be exactly {"u":"<url>"} (no spaces): the URL is input bytes
;; [6, len-2). Sends GET <url> with the single header Accept:application/json
;; and no body into a 4096-byte response buffer whose capacity is first stored
;; as u32 LE at resp_len_ptr (Wisp convention, see testdata/README.md).
;; status == 0 -> __insert_error "transport failure", return 1;
;; otherwise   -> __insert_response(resp_ptr, resp_len), return 0.
;; Input shorter than 8 bytes or longer than 28672 -> __insert_error "bad input".
;;
;; Memory map: 0x10 status u16 | 0x14 resp_len u32 | 0x100 headers |
;;             0x300 messages | 0x1000 input (28 KiB) | 0x8000 response (4 KiB)
(module
  (import "fl_imps" "__get_input_data" (func $get_input_data (param i32)))
  (import "fl_imps" "__insert_response" (func $insert_response (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $insert_error (param i32 i32)))
  (import "fl_imps" "__http_request"
    (func $http_request (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x100) "Accept:application/json")  ;; 23 bytes
  (data (i32.const 0x300) "transport failure")        ;; 17 bytes
  (data (i32.const 0x320) "bad input")                ;; 9 bytes
  (func (export "__invoke") (param $input_len i32) (result i32)
    (if (i32.or (i32.lt_s (local.get $input_len) (i32.const 8))
                (i32.gt_s (local.get $input_len) (i32.const 0x7000)))
      (then
        (call $insert_error (i32.const 0x320) (i32.const 9))
        (return (i32.const 1))))
    (call $get_input_data (i32.const 0x1000))
    ;; response buffer capacity, read by the host before it writes
    (i32.store (i32.const 0x14) (i32.const 4096))
    (i32.store16 (i32.const 0x10) (i32.const 0))
    (call $http_request
      (i32.const 0x8000)                                  ;; resp_ptr
      (i32.const 0x14)                                    ;; resp_len_ptr
      (i32.const 0x10)                                    ;; status_ptr
      (i32.const 0)                                       ;; method: GET
      (i32.const 0x1006)                                  ;; uri_ptr
      (i32.sub (local.get $input_len) (i32.const 8))      ;; uri_len
      (i32.const 0x100) (i32.const 23)                    ;; headers
      (i32.const 0) (i32.const 0))                        ;; no body
    (if (i32.eqz (i32.load16_u (i32.const 0x10)))
      (then
        (call $insert_error (i32.const 0x300) (i32.const 17))
        (return (i32.const 1))))
    (call $insert_response (i32.const 0x8000) (i32.load (i32.const 0x14)))
    (i32.const 0)))
