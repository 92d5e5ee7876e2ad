// Package budget refuses work that cannot fit before it allocates anything:
// it estimates a training or inference run's memory from the network's
// architecture (vision.Footprint) and compares it with the memory this
// process may still use (the least of the kernel's MemAvailable, the memory
// cgroup's headroom and the address-space limit), and it bounds the thread
// count by the CPUs the process may run on.
package budget

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"modelstitch/experiments/invalid"
	"modelstitch/torch/vision"
)

// Limit is the memory the process may still allocate, and where that figure
// comes from.
type Limit struct {
	// Bytes is the headroom; +Inf when nothing limits it (no /proc).
	Bytes float64
	// From names the source: "MemAvailable in /proc/meminfo", "memory cgroup
	// limit", "address-space limit (ulimit -v)".
	From string
}

// Available returns the least headroom among the kernel's available memory,
// the memory cgroup's limit (v1 or v2) less its usage, and the address-space
// limit (RLIMIT_AS) less the process's current virtual size.
func Available() Limit {
	l := Limit{Bytes: math.Inf(1), From: "no limit found"}
	take := func(b float64, from string) {
		if b >= 0 && b < l.Bytes {
			l = Limit{Bytes: b, From: from}
		}
	}
	if kb, ok := procField("/proc/meminfo", "MemAvailable:"); ok {
		take(kb*1024, "MemAvailable in /proc/meminfo")
	}
	if b, ok := cgroupHeadroom(); ok {
		take(b, "the memory cgroup's limit")
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &rl); err == nil && rl.Cur != math.MaxUint64 && rl.Cur < 1<<62 {
		if kb, ok := procField("/proc/self/status", "VmSize:"); ok {
			take(math.Max(0, float64(rl.Cur)-kb*1024), "the address-space limit (ulimit -v)")
		}
	}
	return l
}

// ResidentBytes returns this process's resident set size (VmRSS in
// /proc/self/status), or 0 where the system does not say.
func ResidentBytes() int64 {
	kb, _ := procField("/proc/self/status", "VmRSS:")
	return int64(kb) * 1024
}

// PeakResidentBytes returns this process's peak resident set size
// (getrusage's ru_maxrss), or 0 where the system does not say.
func PeakResidentBytes() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return int64(ru.Maxrss) * 1024 // Linux reports kilobytes
}

// VirtualBytes returns this process's virtual size (VmSize in
// /proc/self/status), or 0 where the system does not say.
func VirtualBytes() int64 {
	kb, _ := procField("/proc/self/status", "VmSize:")
	return int64(kb) * 1024
}

// procField reads the number after key in a /proc file of "key: N kB" lines.
func procField(path, key string) (float64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == key {
			v, err := strconv.ParseFloat(fields[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// cgroupHeadroom is the memory cgroup's limit less its usage: cgroup v2's
// memory.max and memory.current, else v1's limit_in_bytes and
// usage_in_bytes. False when no limit is set.
func cgroupHeadroom() (float64, bool) {
	read := func(path string) (float64, bool) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		return v, err == nil
	}
	dirs := []string{"/sys/fs/cgroup"}
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok && p != "/" {
				dirs = append([]string{filepath.Join("/sys/fs/cgroup", p)}, dirs...)
			}
		}
	}
	for _, d := range dirs {
		if limit, ok := read(filepath.Join(d, "memory.max")); ok { // "max" does not parse: no limit
			if used, ok := read(filepath.Join(d, "memory.current")); ok {
				return math.Max(0, limit-used), true
			}
		}
	}
	limit, ok := read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
	if !ok || limit >= 1<<60 { // v1 says "no limit" with a page-rounded MaxInt64
		return 0, false
	}
	used, ok := read("/sys/fs/cgroup/memory/memory.usage_in_bytes")
	if !ok {
		return 0, false
	}
	return math.Max(0, limit-used), true
}

// Bytes formats n bytes for a message: "3.2 GiB", "512 MiB", "4.1e+07 TiB".
func Bytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if n >= 1e4 {
		return fmt.Sprintf("%.2g %s", n, units[i])
	}
	if n >= 100 || i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// Run is a network's training or inference run, to estimate.
type Run struct {
	// Net is the network; Height and Width the images' size.
	Net           vision.ResNetConfig
	Height, Width int64
	// Batch is the number of images per step, each seen as Views views
	// (0 means 1; SimCLR's batch of N images is 2N views).
	Batch, Views int
	// OptimizerSlots is the number of per-parameter tensors the optimizer
	// keeps (SGD with momentum 1, Adam 2); Training false means inference.
	OptimizerSlots int
	Training       bool
	// Extra is memory the run needs besides the network (a projection head,
	// a second network), in bytes.
	Extra float64
	// ParamsOnly counts the parameters (with gradients and optimizer state
	// when training) and nothing else: a check before the images' size is known.
	ParamsOnly bool
}

// Estimate returns a lower bound of the run's memory in bytes, with the
// network's footprint: the parameters, their gradients and the optimizer's
// state, and the activations of one batch (all of them kept for the
// backward pass when training; the largest two at once for inference).
// Everything is float32.
func Estimate(r Run) (float64, vision.Footprint, error) {
	h, w := r.Height, r.Width
	if r.ParamsOnly { // the images' size does not matter
		h, w = max(h, 1), max(w, 1)
	}
	f, err := r.Net.Footprint(h, w)
	if err != nil {
		return 0, f, err
	}
	values := f.Params + f.Buffers
	if r.Training {
		values += f.Params * float64(1+r.OptimizerSlots)
	}
	if r.ParamsOnly {
		return 4*values + r.Extra, f, nil
	}
	batch := float64(max(r.Batch, 1) * max(r.Views, 1))
	if r.Training {
		values += batch * f.Activations
	} else {
		values += 2 * batch * f.LargestActivation
	}
	return 4*values + r.Extra, f, nil
}

// Check refuses a run whose estimate exceeds the available memory. The error
// is an invalid setting: the width when the parameters alone do not fit
// (widthField), else the batch size (batchField), and it gives the estimate
// and the limit with its source.
func Check(r Run, widthField, batchField string) error {
	need, f, err := Estimate(r)
	if err != nil {
		return err
	}
	avail := Available()
	if need <= avail.Bytes {
		return nil
	}
	what := "inference with"
	if r.Training {
		what = "training"
	}
	paramBytes := 4 * (f.Params + f.Buffers)
	if r.Training {
		paramBytes = 4 * (2*f.Params + f.Buffers + float64(r.OptimizerSlots)*f.Params)
	}
	views := ""
	if r.Views > 1 {
		views = fmt.Sprintf(" (%d views each)", r.Views)
	}
	detail := fmt.Sprintf("%s %s on %d×%d images in batches of %d%s needs at least %s of memory (%.3g parameters: %s with gradients and optimizer state; activations %s), more than the %s available (%s)",
		what, r.Net, r.Height, r.Width, r.Batch, views, Bytes(need), f.Params, Bytes(paramBytes), Bytes(need-paramBytes-r.Extra),
		Bytes(avail.Bytes), avail.From)
	if r.ParamsOnly {
		detail = fmt.Sprintf("%s a %s of width %g needs at least %s of memory for its %.3g parameters alone (with gradients and optimizer state when training), more than the %s available (%s)",
			what, r.Net.ArchName(), r.Net.Width, Bytes(need), f.Params, Bytes(avail.Bytes), avail.From)
	}
	if paramBytes+r.Extra > avail.Bytes || batchField == "" {
		return invalid.Errorf(widthField, "%v is too large: %s", r.Net.Width, detail)
	}
	return invalid.Errorf(batchField, "%d is too large: %s", r.Batch, detail)
}

// MaxAddressable is the most bytes a run may need on any machine: libtorch
// counts a tensor's elements and bytes in int64, and no machine addresses
// more.
const MaxAddressable = math.MaxInt64

// CheckAddressable refuses a run that cannot fit on any machine: one whose
// network cannot be built (the error of vision.Footprint) or whose estimate
// (Estimate) is not a finite number of bytes at most MaxAddressable. The
// error is an invalid setting of widthField. It is the part of Check that
// does not depend on this machine's memory, for checks made before it is
// known where the run will be (a grid's spec is read on one machine and its
// units run on others).
func CheckAddressable(r Run, widthField string) error {
	need, f, err := Estimate(r)
	if err != nil {
		return invalid.Wrap(widthField, err)
	}
	if !(need <= MaxAddressable) {
		size := fmt.Sprintf("%.3g bytes for its %.3g parameters", need, f.Params)
		if math.IsInf(need, 0) || math.IsNaN(need) {
			size = "more bytes than a number can count"
		}
		return invalid.Errorf(widthField, "%v is too large: a %s of width %v needs %s, more than any machine can address (%s)",
			r.Net.Width, r.Net.ArchName(), r.Net.Width, size, Bytes(MaxAddressable))
	}
	return nil
}

// MaxThreads is the most libtorch threads a run may ask for: twice the CPUs
// this process may run on (more only adds contention, and thousands of
// threads exhaust the machine).
func MaxThreads() int { return 2 * runtime.NumCPU() }

// CheckThreads refuses a thread count below 1 or above MaxThreads.
func CheckThreads(n int) error {
	if n < 1 {
		return fmt.Errorf("must be at least 1, got %d", n)
	}
	if m := MaxThreads(); n > m {
		return fmt.Errorf("%d is more than %d (twice the %d CPUs this process may use)", n, m, runtime.NumCPU())
	}
	return nil
}
