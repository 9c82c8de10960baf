;; custody's demo guest (WAT: needs no compiler).
;;
;; `run` opens data/hello.txt from its pre-opened directory, reads it, sends
;; it through a pipe, waits for the pipe with poll, reads it back and logs
;; it. It "forgets" to close the pipe's read end: the domain's unload
;; releases it, and the ledger shows it.
;;
;;   custody run examples/demo.wat --preopen examples/data
;;
;; prints `result: 34` (the bytes echoed) and the ledger: opened 3, closed by
;; the guest 2, released at unload 1, release failures 0.
(module
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (import "custody" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "poll" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "custody" "log" (func $log (param i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 1024) "data/hello.txt")

  ;; Slots: 0 file, 4 pipe read end, 8 pipe write end, 12 byte count,
  ;; 16 the poll array, 20 the ready index. Buffers at 4096 and 8192.
  (global $FILE i32 (i32.const 0))
  (global $READ_END i32 (i32.const 4))
  (global $WRITE_END i32 (i32.const 8))
  (global $COUNT i32 (i32.const 12))


  (func (export "run") (result i32)
    (local $rc i32)
    (local $n i32)
    ;; open data/hello.txt for reading
    (local.set $rc (call $open (i32.const 1024) (i32.const 14) (i32.const 1) (global.get $FILE)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (local.set $rc (call $read (i32.load (global.get $FILE)) (i32.const 4096) (i32.const 1024) (global.get $COUNT)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (local.set $n (i32.load (global.get $COUNT)))
    (drop (call $close (i32.load (global.get $FILE))))

    ;; through a pipe and back
    (local.set $rc (call $pipe (global.get $READ_END) (global.get $WRITE_END)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (local.set $rc (call $write (i32.load (global.get $WRITE_END)) (i32.const 4096) (local.get $n) (global.get $COUNT)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (drop (call $close (i32.load (global.get $WRITE_END))))
    (i32.store (i32.const 16) (i32.load (global.get $READ_END)))
    (local.set $rc (call $poll (i32.const 16) (i32.const 1) (i32.const 1000) (i32.const 20)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (local.set $rc (call $read (i32.load (global.get $READ_END)) (i32.const 8192) (i32.const 1024) (global.get $COUNT)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (drop (call $log (i32.const 2) (i32.const 8192) (i32.load (global.get $COUNT))))

    ;; The read end is never closed: the unload releases it.
    (i32.load (global.get $COUNT)))
)
