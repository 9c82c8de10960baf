;; The bundled WAGI echo: writes its CGI environment, one NAME=VALUE per
;; line, then `--- args ---` and its arguments, one per line, then
;; `--- body ---` and the request body as it reads it (streamed: a 64 KiB
;; buffer, whatever the body's size).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  ;; 0: an iovec; 16: results; 64: strings; 1024: the environment's
  ;; pointers (1792 at most); 8192: its strings (56 KiB at most), then the
  ;; arguments' the same way; 65536: the body buffer.
  (memory (export "memory") 2)
  (data (i32.const 64) "content-type: text/plain\n\n")
  (data (i32.const 96) "\n")
  (data (i32.const 100) "--- body ---\n")
  (data (i32.const 120) "--- args ---\n")
  (func $write_all (param $ptr i32) (param $len i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))
          (then (call $proc_exit (i32.const 1))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 16))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 16))))
        (br $more))))
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))
  ;; Writes `count` strings whose pointers are at 1024, one per line.
  (func $lines (param $count i32) (local $i i32) (local $p i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $p (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))
        (call $write_all (local.get $p) (call $strlen (local.get $p)))
        (call $write_all (i32.const 96) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
  ;; Stops unless `count` pointers and `size` bytes fit.
  (func $check_fits (param $count i32) (param $size i32)
    (if (i32.or (i32.gt_u (local.get $count) (i32.const 1792))
                (i32.gt_u (local.get $size) (i32.const 57344)))
      (then (call $proc_exit (i32.const 3)))))
  (func (export "_start") (local $n i32)
    (call $write_all (i32.const 64) (i32.const 26))
    (if (call $environ_sizes_get (i32.const 16) (i32.const 20)) (then (unreachable)))
    (call $check_fits (i32.load (i32.const 16)) (i32.load (i32.const 20)))
    (if (call $environ_get (i32.const 1024) (i32.const 8192)) (then (unreachable)))
    (call $lines (i32.load (i32.const 16)))
    (call $write_all (i32.const 120) (i32.const 13))
    (if (call $args_sizes_get (i32.const 16) (i32.const 20)) (then (unreachable)))
    (call $check_fits (i32.load (i32.const 16)) (i32.load (i32.const 20)))
    (if (call $args_get (i32.const 1024) (i32.const 8192)) (then (unreachable)))
    (call $lines (i32.load (i32.const 16)))
    (call $write_all (i32.const 100) (i32.const 13))
    (block $eof
      (loop $next
        (i32.store (i32.const 0) (i32.const 65536))
        (i32.store (i32.const 4) (i32.const 65536))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16))
          (then (call $proc_exit (i32.const 2))))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $eof (i32.eqz (local.get $n)))
        (call $write_all (i32.const 65536) (local.get $n))
        (br $next)))))
