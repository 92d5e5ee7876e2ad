package torch

import "runtime"

// keepAlive keeps x reachable until this point, so a finalizer cannot free
// its handle during a C call.
func keepAlive(x any) { runtime.KeepAlive(x) }
