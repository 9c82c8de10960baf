;; A custody-ABI hello world (`interface = "custody"`): `handle` sets the
;; content type through custody_http and writes a line to the response
;; handle. The same answer as hello.wat, for the performance figures.
(module
  (import "custody_http" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "content-type")
  (data (i32.const 80) "text/plain")
  (data (i32.const 96) "hello, world\n")
  (func (export "handle") (param $request i32) (param $response i32) (result i32)
    (drop (call $set_header (i32.const 64) (i32.const 12) (i32.const 80) (i32.const 10)))
    ;; 13 bytes; a pipe takes them whole
    (drop (call $write (local.get $response) (i32.const 96) (i32.const 13) (i32.const 8)))
    (i32.const 0)))
