// DangerousAddRef + DangerousRelease on one SafeHandle, timed: the Mono peer
// of custody-handle's add-ref + release (docs/PERFORMANCE.md gives the commands).
using System;
using System.Diagnostics;
using System.Runtime.InteropServices;

sealed class Dummy : SafeHandle {
    public Dummy() : base(IntPtr.Zero, true) { SetHandle((IntPtr)1); }
    public override bool IsInvalid => handle == IntPtr.Zero;
    protected override bool ReleaseHandle() => true;
}

static class Program {
    static void Main() {
        var h = new Dummy();
        const int N = 50000000;
        for (int round = 0; round < 7; round++) {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < N; i++) {
                bool ok = false;
                h.DangerousAddRef(ref ok);
                h.DangerousRelease();
            }
            sw.Stop();
            Console.WriteLine($"{sw.Elapsed.TotalMilliseconds * 1e6 / N:F2} ns per add-ref + release");
        }
        h.Dispose();
    }
}
