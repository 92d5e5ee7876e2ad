package weights

import (
	"archive/zip"
	"bytes"
	"errors"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// zipOf builds a zip archive from name → contents (sorted by name).
func zipOf(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// torchZipOf wraps a data.pkl in a minimal torch.save zip archive.
func torchZipOf(t testing.TB, pkl []byte) []byte {
	return zipOf(t, map[string][]byte{"archive/data.pkl": pkl, "archive/version": []byte("3\n")})
}

func TestHandMadePicklesRefused(t *testing.T) {
	tests := []struct {
		name   string
		pkl    string
		global string
	}{
		{"os.system", "\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R.", "os.system"},
		{"posix.system", "\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R.", "posix.system"},
		{"builtins.eval", "\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1+\x85R.", "builtins.eval"},
		{"__builtin__.getattr", "\x80\x02c__builtin__\ngetattr\n.", "__builtin__.getattr"},
		{"subprocess.Popen", "\x80\x02csubprocess\nPopen\n.", "subprocess.Popen"},
		{"nt.system", "\x80\x02cnt\nsystem\n.", "nt.system"},
		{"importlib", "\x80\x02cimportlib\nimport_module\n.", "importlib.import_module"},
		{"stack global", "\x80\x04\x8c\x02os\x8c\x06system\x93.", "os.system"},
		{"functools.partial", "\x80\x02cfunctools\npartial\n.", "functools.partial"},
		{"torch.load", "\x80\x02ctorch\nload\n.", "torch.load"},
		{"unknown function called", "\x80\x02cmylib\ndo_stuff\n)R.", "mylib.do_stuff"},
		{"plain function called", "\x80\x02ctorch.nn.functional\nrelu\nK\x01\x85R.", "torch.nn.functional.relu"},
		{"dotted name", "\x80\x04\x8c\x05numpy\x8c\x0ctesting.eval\x93.", "numpy.testing.eval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadTorchBytes(torchZipOf(t, []byte(tc.pkl)))
			var ug *UnsafeGlobalError
			if !errors.As(err, &ug) {
				t.Fatalf("got %v, want an UnsafeGlobalError", err)
			}
			if !strings.Contains(err.Error(), "refusing to load global "+tc.global) {
				t.Errorf("error %q does not name %s", err, tc.global)
			}
		})
	}
}

func TestFindClassInert(t *testing.T) {
	for _, g := range []string{
		"argparse.Namespace", "numpy.core.multiarray.scalar", "numpy.dtype", "builtins.set",
		"__builtin__.set", "torch.float32", "collections.OrderedDict", "pathlib.PosixPath",
		"omegaconf.dictconfig.DictConfig", "torch.FloatStorage", "torch.cuda.HalfStorage",
		"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_qtensor", "builtins.slice",
		"torch.storage.UntypedStorage", "datetime.datetime", "_codecs.encode", "copyreg._reconstructor",
	} {
		i := strings.LastIndex(g, ".")
		if _, err := findClass(g[:i], g[i+1:]); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
}

func TestMalformedPickles(t *testing.T) {
	for _, pkl := range []string{
		"",
		"\x80\x02",                   // no STOP
		"\x80\x02X\xff\xff\xff\x7f.", // string longer than the data
		"\x80\x02\x8a\x00.",          // empty LONG1 (gopickle would panic)
		"\x80\x02(K\x01K\x02K\x03d.", // odd dict items (gopickle would panic)
		"\x80\x02\xff.",              // unknown opcode
		"\x80\x02\x95\xff\xff\xff\xff\xff\xff\xff\x7f.", // huge frame
		"\x80\x02]X\x01\x00\x00\x00a\x85\x8f\x94.",      // nonsense but valid opcodes
		"\x80\x02K\x01.", // an int, not a dict
	} {
		if _, err := ReadTorchBytes(torchZipOf(t, []byte(pkl))); err == nil {
			t.Errorf("pickle %q: no error", pkl)
		}
	}
}

func TestScanPickleLimits(t *testing.T) {
	marks := bytes.Repeat([]byte{'('}, maxPickleMarks+1)
	if _, err := scanPickle(append(marks, '.')); err == nil || !strings.Contains(err.Error(), "MARK") {
		t.Errorf("too many marks: %v", err)
	}
	if end, err := scanPickle([]byte("\x80\x02}q\x00.trailing")); err != nil || end != 6 {
		t.Errorf("scan of a small pickle: end %d, err %v", end, err)
	}
}

func TestStorageReuseBudget(t *testing.T) {
	const m = 1 << 20
	big := &RawTensor{DType: Float32, Shape: []int64{m}}
	build := func(n int) []byte {
		p := &pickler{globals: map[string]int{}}
		p.b.Write([]byte{0x80, 2, '}', '('})
		for i := 0; i < n; i++ {
			p.str(strconv.Itoa(i))
			p.tensor(big, "0")
		}
		p.b.WriteString("u.")
		return zipOf(t, map[string][]byte{"a/data.pkl": p.b.Bytes(), "a/data/0": make([]byte, 4*m)})
	}
	// Tied weights (one storage, two names) are fine.
	ck, err := ReadTorchBytes(build(2))
	if err != nil || ck.State.Len() != 2 {
		t.Fatalf("tied weights: %v", err)
	}
	// One storage named a hundred times is refused before allocating.
	if _, err := ReadTorchBytes(build(100)); err == nil || !strings.Contains(err.Error(), "times the file's size") {
		t.Errorf("storage reuse: %v", err)
	}
}

func TestCyclicAndSharedContainers(t *testing.T) {
	small := &RawTensor{DType: Float32, Shape: []int64{1}}
	// A module whose _modules holds itself twice.
	p := &pickler{globals: map[string]int{}}
	p.b.Write([]byte{0x80, 2})
	p.global("__main__", "Net")
	p.b.Write([]byte{')', 0x81})
	self := p.memo
	p.put()
	p.b.Write([]byte{'}', '('})
	p.str("_parameters")
	p.b.Write([]byte{'}', '('})
	p.str("w")
	p.tensor(small, "0")
	p.b.WriteByte('u')
	p.str("_modules")
	p.b.Write([]byte{'}', '('})
	p.str("a")
	p.get(self)
	p.str("b")
	p.get(self)
	p.b.Write([]byte{'u', 'u', 'b', '.'})
	ck, err := ReadTorchBytes(zipOf(t, map[string][]byte{"a/data.pkl": p.b.Bytes(), "a/data/0": make([]byte, 4)}))
	if err != nil || strings.Join(ck.State.Keys, ",") != "w" {
		t.Fatalf("cyclic module: %v", err)
	}

	// Wrappers four deep, each level 300 entries pointing at the same dict.
	p = &pickler{globals: map[string]int{}}
	p.b.Write([]byte{0x80, 2, '}', 'X', 1, 0, 0, 0, 'a', 'K', 1, 's'})
	for level := 0; level < 4; level++ {
		inner := p.memo
		p.put()
		p.b.Write([]byte{'}', '('})
		for i := 0; i < 300; i++ {
			p.str(strconv.Itoa(i))
			p.get(inner)
		}
		p.b.WriteByte('u')
	}
	p.b.WriteByte('.')
	start := time.Now()
	_, err = ReadTorchBytes(torchZipOf(t, p.b.Bytes()))
	if err == nil || !strings.Contains(err.Error(), "no state dict found") {
		t.Errorf("shared wrappers: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shared wrappers took %v", d)
	}
}

// TestPlainFunctionValues: a plain function stored as a value (a pickled
// module's self.act = F.relu) reads as an inert value; calling one is
// refused with the Python one-liner that re-saves the weights.
func TestPlainFunctionValues(t *testing.T) {
	v, err := findClass("torch.nn.functional", "relu")
	if err != nil {
		t.Fatal(err)
	}
	f, ok := v.(*pyFunc)
	if !ok {
		t.Fatalf("got %T, want an inert function value", v)
	}
	_, err = f.Call(1)
	var ug *UnsafeGlobalError
	if !errors.As(err, &ug) || !strings.Contains(err.Error(), "torch.save(m.state_dict()") {
		t.Errorf("calling it: %v", err)
	}
	for _, g := range [][2]string{{"os", "system"}, {"builtins", "eval"}, {"mylib", "exec_thing"}} {
		if _, err := findClass(g[0], g[1]); err == nil {
			t.Errorf("%s.%s accepted", g[0], g[1])
		}
	}
}
