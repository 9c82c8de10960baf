;; The bundled WAGI hello world: a WASI command that writes a header block
;; and a line to stdout.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "content-type: text/plain\n\nhello, world\n")
  (func (export "_start")
    ;; one iovec at 0: the 39 bytes at 64; a pipe takes them whole
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 39))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
