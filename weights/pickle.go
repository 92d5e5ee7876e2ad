package weights

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// UnsafeGlobalError reports a pickle global (a Python class or function named
// in the file) that the reader refuses to load. Reading never runs code, but a
// checkpoint that asks for os.system or builtins.eval is hostile or broken, so
// it is refused rather than half-loaded.
type UnsafeGlobalError struct {
	Module, Name string
	// Reason says why, e.g. "a checkpoint must not run code".
	Reason string
}

// Error says which global was refused and why.
func (e *UnsafeGlobalError) Error() string {
	return fmt.Sprintf("refusing to load global %s (%s)", SanitizeMessage(e.Module+"."+e.Name, maxNameInError), e.Reason)
}

// Limits on what a pickle may make the unpickler allocate beyond its own size.
const (
	maxPickleOps   = 1 << 24 // opcodes in one pickle
	maxPickleMarks = 1 << 20 // MARK opcodes (gopickle allocates a fresh stack for each)
	maxPickleBoxes = 1 << 22 // container-making opcodes (dicts, lists, tuples, objects)
)

// scanPickle walks the opcodes of the pickle at the start of data without
// building anything, and returns the offset just past its STOP. It checks that
// every length-prefixed argument fits in data, so that gopickle, which
// allocates a buffer of the declared length before reading, can never be asked
// for more memory than the input holds; and it bounds the number of opcodes
// that make containers.
func scanPickle(data []byte) (int, error) {
	i, ops, marks, boxes := 0, 0, 0, 0
	need := func(n uint64) error {
		if n > uint64(len(data)-i) {
			return fmt.Errorf("pickle truncated at offset %d (argument of %d bytes, %d left)", i, n, len(data)-i)
		}
		return nil
	}
	line := func() error {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return fmt.Errorf("pickle truncated at offset %d (unterminated line)", i)
		}
		i += j + 1
		return nil
	}
	for {
		if i >= len(data) {
			return 0, fmt.Errorf("pickle ends without STOP")
		}
		op := data[i]
		i++
		ops++
		if ops > maxPickleOps {
			return 0, fmt.Errorf("pickle has more than %d opcodes", maxPickleOps)
		}
		var err error
		switch op {
		case '.': // STOP
			return i, nil
		case '(': // MARK
			marks++
			if marks > maxPickleMarks {
				return 0, fmt.Errorf("pickle has more than %d MARK opcodes", maxPickleMarks)
			}
		case '}', ']', ')', 0x8f, 'd', 'l', 't', 0x85, 0x86, 0x87, 0x91, 'R', 0x81, 0x92, 'o', 'i', 'b':
			boxes++
			if boxes > maxPickleBoxes {
				return 0, fmt.Errorf("pickle makes more than %d objects", maxPickleBoxes)
			}
			if op == 'i' { // INST: module and name lines
				if err = line(); err == nil {
					err = line()
				}
			}
		case '0', '1', '2', 'N', 0x88, 0x89, 'Q', 'a', 'e', 's', 'u', 0x90, 0x93, 0x94, 0x97, 0x98:
			// no argument
		case 'F', 'I', 'L', 'P', 'S', 'V', 'g', 'p':
			err = line()
		case 'c': // GLOBAL: module and name lines
			if err = line(); err == nil {
				err = line()
			}
		case 'K', 'h', 'q', 0x80, 0x82:
			err = need(1)
			i += 1
		case 'M', 0x83:
			err = need(2)
			i += 2
		case 'J', 'j', 'r', 0x84:
			err = need(4)
			i += 4
		case 'G':
			err = need(8)
			i += 8
		case 'U', 'C', 0x8c, 0x8a: // 1-byte length
			if err = need(1); err != nil {
				break
			}
			n := uint64(data[i])
			i++
			if op == 0x8a && n == 0 {
				return 0, fmt.Errorf("pickle has an empty LONG1 at offset %d", i-2)
			}
			err = need(n)
			i += int(n)
		case 'T', 'X', 'B', 0x8b: // 4-byte length
			if err = need(4); err != nil {
				break
			}
			n := uint64(binary.LittleEndian.Uint32(data[i:]))
			i += 4
			if (op == 'T' || op == 0x8b) && n >= 1<<31 {
				return 0, fmt.Errorf("pickle has a negative length at offset %d", i-5)
			}
			if op == 0x8b && n == 0 {
				return 0, fmt.Errorf("pickle has an empty LONG4 at offset %d", i-5)
			}
			err = need(n)
			i += int(n)
		case 0x8d, 0x8e, 0x96: // 8-byte length
			if err = need(8); err != nil {
				break
			}
			n := binary.LittleEndian.Uint64(data[i:])
			i += 8
			err = need(n)
			if err == nil {
				i += int(n)
			}
		case 0x95: // FRAME: its contents are the opcodes that follow
			if err = need(8); err != nil {
				break
			}
			n := binary.LittleEndian.Uint64(data[i:])
			i += 8
			err = need(n)
		default:
			return 0, fmt.Errorf("pickle has unknown opcode 0x%02x at offset %d", op, i-1)
		}
		if err != nil {
			return 0, err
		}
	}
}

// unpickle decodes the pickle at the start of data with the allow-listed
// globals and the given persistent-load hook, and returns the object and the
// offset past the pickle. Panics inside gopickle (it has a few on malformed
// input) come back as errors.
func unpickle(data []byte, persistentLoad func(any) (any, error)) (obj any, end int, err error) {
	return unpickleWith(data, findClass, persistentLoad)
}

// unpickleWith is unpickle with another resolver of globals.
func unpickleWith(data []byte, findClass func(module, name string) (any, error), persistentLoad func(any) (any, error)) (obj any, end int, err error) {
	end, err = scanPickle(data)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if r := recover(); r != nil {
			obj, end, err = nil, 0, fmt.Errorf("malformed pickle: %v", r)
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(data[:end]))
	u.FindClass = findClass
	if persistentLoad != nil {
		u.PersistentLoad = persistentLoad
	} else {
		u.PersistentLoad = func(any) (any, error) { return nil, errors.New("unexpected persistent id") }
	}
	obj, err = u.Load()
	if err != nil {
		var ug *UnsafeGlobalError
		if errors.As(err, &ug) {
			return nil, 0, err
		}
		msg := err.Error() // gopickle's messages can print whole objects
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return nil, 0, fmt.Errorf("unpickling: %s", msg)
	}
	return obj, end, nil
}

// pyClass is an inert stand-in for a Python class or function that the reader
// does not interpret (argparse.Namespace, numpy.dtype, an nn.Module class...).
// Calling or instantiating it records the arguments; nothing runs.
type pyClass struct{ Module, Name string }

// Call records a REDUCE of the class.
func (c *pyClass) Call(args ...any) (any, error) { return &pyObject{Class: c, Args: args}, nil }

// PyNew records a NEWOBJ of the class.
func (c *pyClass) PyNew(args ...any) (any, error) { return &pyObject{Class: c, Args: args}, nil }

// String is the dotted Python name.
func (c *pyClass) String() string { return c.Module + "." + c.Name }

// pyObject is an inert instance of a pyClass. It accepts every way pickle
// fills an object (BUILD state, dict items, list items, set items) and keeps them.
type pyObject struct {
	Class *pyClass
	Args  []any
	State any
	Items *types.Dict // dict subclass items (SETITEM/SETITEMS)
	List  []any       // list subclass items (APPEND/APPENDS) and set items
}

// PySetState records a BUILD.
func (o *pyObject) PySetState(state any) error { o.State = state; return nil }

// Set records a dict item.
func (o *pyObject) Set(k, v any) {
	if o.Items == nil {
		o.Items = types.NewDict()
	}
	o.Items.Set(k, v)
}

// Append records a list item.
func (o *pyObject) Append(v any) { o.List = append(o.List, v) }

// Add records a set item.
func (o *pyObject) Add(v any) { o.List = append(o.List, v) }

// storageClass is one of torch's typed storage classes, e.g. torch.FloatStorage.
type storageClass struct {
	name  string
	dtype DType
}

// storage is one serialized storage: a record of a zip file or a block after a
// legacy pickle. Its bytes are read only when a tensor that uses it is needed.
type storage struct {
	key   string
	dtype DType
	numel int64
	data  []byte
	load  func() ([]byte, error) // nil once loaded, or for legacy storages filled later
	err   error
}

// bytes returns the storage's bytes, loading them on first use.
func (s *storage) bytes() ([]byte, error) {
	if s.load != nil {
		s.data, s.err = s.load()
		s.load = nil
	}
	if s.err != nil {
		return nil, s.err
	}
	if s.data == nil && s.numel > 0 {
		return nil, fmt.Errorf("storage %s has no data", quoteName(s.key))
	}
	return s.data, nil
}

// storageRef is what persistent_load returns: a storage, or (old legacy
// files) a view of part of one, offsets in elements.
type storageRef struct {
	st    *storage
	off   int64
	numel int64
}

// tensorRef is a tensor as the pickle describes it: a storage and the
// offset, sizes and strides of a possibly non-contiguous view into it.
type tensorRef struct {
	st     *storageRef
	offset int64
	size   []int64
	stride []int64
}

// PySetState accepts the BUILD some pickles apply to tensors (python attributes).
func (t *tensorRef) PySetState(any) error { return nil }

// callFunc adapts a Go function to gopickle's Callable.
type callFunc func(args ...any) (any, error)

// Call calls f.
func (f callFunc) Call(args ...any) (any, error) { return f(args...) }

// newFunc adapts a Go function to gopickle's PyNewable (for NEWOBJ).
type newFunc func(args ...any) (any, error)

// PyNew calls f.
func (f newFunc) PyNew(args ...any) (any, error) { return f(args...) }

var storageClasses = map[string]DType{
	"FloatStorage":    Float32,
	"DoubleStorage":   Float64,
	"HalfStorage":     Float16,
	"BFloat16Storage": BFloat16,
	"LongStorage":     Int64,
	"IntStorage":      Int32,
	"ShortStorage":    Int16,
	"CharStorage":     Int8,
	"ByteStorage":     Uint8,
	"BoolStorage":     Bool,
}

// allowedGlobals are the globals the reader gives meaning to.
var allowedGlobals = map[string]any{
	"torch._utils._rebuild_tensor_v2":            callFunc(rebuildTensor),
	"torch._utils._rebuild_tensor":               callFunc(rebuildTensor),
	"torch._utils._rebuild_parameter":            callFunc(rebuildParameter),
	"torch._utils._rebuild_parameter_with_state": callFunc(rebuildParameter),
	"torch.nn.parameter.Parameter":               newFunc(rebuildParameter),
	"torch._tensor._rebuild_from_type_v2":        callFunc(rebuildFromType),
	"torch.Size":                                 callFunc(torchSize),
	"torch.storage.UntypedStorage":               &storageClass{name: "UntypedStorage", dtype: Uint8},
	"torch.UntypedStorage":                       &storageClass{name: "UntypedStorage", dtype: Uint8},
	"torch.storage._UntypedStorage":              &storageClass{name: "UntypedStorage", dtype: Uint8},
	"collections.OrderedDict":                    &types.OrderedDictClass{},
	"collections.defaultdict":                    callFunc(func(...any) (any, error) { return types.NewDict(), nil }),
	"builtins.set":                               callFunc(makeSet),
	"__builtin__.set":                            callFunc(makeSet),
	"builtins.frozenset":                         callFunc(makeSet),
	"__builtin__.frozenset":                      callFunc(makeSet),
	"builtins.object":                            &types.ObjectClass{},
	"__builtin__.object":                         &types.ObjectClass{},
	"copyreg._reconstructor":                     &types.Reconstructor{},
	"copy_reg._reconstructor":                    &types.Reconstructor{},
	"copyreg.__newobj__":                         callFunc(newObj),
	"copy_reg.__newobj__":                        callFunc(newObj),
	"_codecs.encode":                             callFunc(codecsEncode),
	"torch.serialization._get_layout":            &pyClass{"torch.serialization", "_get_layout"},
	"numpy.core.multiarray.scalar":               &pyClass{"numpy.core.multiarray", "scalar"},
	"numpy.core.multiarray._reconstruct":         &pyClass{"numpy.core.multiarray", "_reconstruct"},
	"numpy._core.multiarray.scalar":              &pyClass{"numpy._core.multiarray", "scalar"},
	"numpy._core.multiarray._reconstruct":        &pyClass{"numpy._core.multiarray", "_reconstruct"},
	"numpy.dtype":                                &pyClass{"numpy", "dtype"},
	"numpy.ndarray":                              &pyClass{"numpy", "ndarray"},
	"torch.device":                               &pyClass{"torch", "device"},
	"datetime.datetime":                          &pyClass{"datetime", "datetime"},
	"datetime.date":                              &pyClass{"datetime", "date"},
	"datetime.time":                              &pyClass{"datetime", "time"},
	"datetime.timedelta":                         &pyClass{"datetime", "timedelta"},
	"datetime.timezone":                          &pyClass{"datetime", "timezone"},
	"types.SimpleNamespace":                      &pyClass{"types", "SimpleNamespace"},
	"torch.storage._TypedStorage":                &pyClass{"torch.storage", "_TypedStorage"},
	"torch.storage.TypedStorage":                 &pyClass{"torch.storage", "TypedStorage"},
}

// harmlessBuiltins are builtins that only make values; they load as inert placeholders.
var harmlessBuiltins = map[string]bool{
	"slice": true, "list": true, "dict": true, "tuple": true, "bytearray": true, "bytes": true,
	"complex": true, "int": true, "float": true, "str": true, "bool": true, "range": true,
	"Ellipsis": true, "NotImplemented": true,
}

// codeModules are modules whose globals can run code, touch files, the network
// or the interpreter. Every global in them (or their submodules) is refused.
var codeModules = []string{
	"os", "posix", "nt", "sys", "subprocess", "shutil", "socket", "pickle", "_pickle",
	"cPickle", "pickletools", "importlib", "imp", "runpy", "code", "codeop", "ctypes",
	"multiprocessing", "pty", "commands", "popen2", "webbrowser", "marshal", "types",
	"functools", "operator", "timeit", "pdb", "bdb", "asyncio", "threading", "_thread",
	"thread", "signal", "platform", "tempfile", "io", "_io", "glob", "http", "urllib",
	"urllib2", "ftplib", "smtplib", "telnetlib", "requests", "yaml", "dill", "cloudpickle",
	"joblib", "shelve", "dbm", "sqlite3", "ssl", "select", "selectors", "inspect", "gc",
	"ast", "compileall", "py_compile", "zipimport", "pkgutil", "site", "distutils",
	"setuptools", "pip", "IPython", "sysconfig", "posixpath", "ntpath", "genericpath",
	"fcntl", "resource", "mmap", "builtins", "__builtin__", "numpy.testing", "numpy.f2py",
	"numpy.distutils", "numpy.lib.npyio", "torch.hub", "torch.jit", "torch.package",
	"torch.utils.cpp_extension", "torch.serialization", "torch.ops", "torch._ops",
	"torch.storage", "torch.distributed", "torch.multiprocessing", "torch.cuda",
}

// codeNames are function names that run or load code wherever they live.
var codeNames = map[string]bool{
	"eval": true, "exec": true, "execfile": true, "compile": true, "__import__": true,
	"getattr": true, "setattr": true, "delattr": true, "system": true, "popen": true,
	"spawn": true, "call": true, "check_call": true, "check_output": true, "run": true,
	"open": true, "load": true, "loads": true, "import_module": true, "globals": true,
	"locals": true, "vars": true, "apply": true, "input": true, "breakpoint": true,
	"runstring": true, "exec_command": true, "attrgetter": true, "methodcaller": true,
	"partial": true, "reduce": true, "remove": true, "unlink": true, "rmtree": true,
}

// findClass is the allow-list: it gives meaning to torch's rebuild functions,
// storage classes and a few containers; lets harmless-looking classes through
// as inert placeholders; and refuses anything that could run code.
func findClass(module, name string) (any, error) {
	full := module + "." + name
	if v, ok := allowedGlobals[full]; ok {
		return v, nil
	}
	if module == "torch" || module == "torch.cuda" {
		if dt, ok := storageClasses[name]; ok {
			return &storageClass{name: name, dtype: dt}, nil
		}
	}
	refuse := func(reason string) error {
		return &UnsafeGlobalError{Module: module, Name: name, Reason: reason}
	}
	if (module == "builtins" || module == "__builtin__") && harmlessBuiltins[name] {
		return &pyClass{module, name}, nil
	}
	for _, m := range codeModules {
		if module == m || strings.HasPrefix(module, m+".") {
			return nil, refuse("a checkpoint must not run code")
		}
	}
	if strings.HasPrefix(name, "spawn") || strings.HasPrefix(name, "exec") || codeNames[name] {
		return nil, refuse("a checkpoint must not run code")
	}
	if !validIdent(module, true) || !validIdent(name, false) {
		return nil, refuse("not a plain module.name")
	}
	// torch dtypes (torch.float32, ...) and torch's other rebuild helpers are data.
	if module == "torch" && isTorchDType(name) || module == "torch._utils" && strings.HasPrefix(name, "_rebuild_") {
		return &pyClass{module, name}, nil
	}
	// Classes (CamelCase names) only construct data when unpickled by us.
	if first := []rune(strings.TrimLeft(name, "_")); len(first) > 0 && unicode.IsUpper(first[0]) {
		return &pyClass{module, name}, nil
	}
	// Other plain functions (self.act = F.relu in a pickled module) load as
	// inert values that hold no tensors; calling one is refused.
	return &pyFunc{module, name}, nil
}

// pyFunc is an inert stand-in for a plain Python function stored as a value,
// such as a module attribute self.act = F.relu in a whole pickled model. It
// holds no tensors and is never called: a pickle that calls it is refused.
type pyFunc struct{ Module, Name string }

// Call refuses: reading a checkpoint never runs its functions.
func (f *pyFunc) Call(args ...any) (any, error) {
	return nil, &UnsafeGlobalError{Module: f.Module, Name: f.Name, Reason: "a checkpoint must not call functions; " +
		"if you trust the file, re-save its weights in Python: " +
		"python3 -c 'import sys, torch; m = torch.load(sys.argv[1], weights_only=False); " +
		"torch.save(m.state_dict() if hasattr(m, \"state_dict\") else m, sys.argv[1] + \".state_dict.pt\")' FILE"}
}

// String is the dotted Python name.
func (f *pyFunc) String() string { return f.Module + "." + f.Name }

// validIdent reports whether s is a Python identifier (dotted if dotted).
func validIdent(s string, dotted bool) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || (!dotted && part != s) {
			return false
		}
		for i, r := range part {
			if !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
				return false
			}
		}
	}
	return true
}

// isTorchDType reports whether torch.<name> is a dtype object.
func isTorchDType(name string) bool {
	switch name {
	case "float32", "float", "float64", "double", "float16", "half", "bfloat16",
		"int64", "long", "int32", "int", "int16", "short", "int8", "uint8", "bool",
		"complex32", "complex64", "complex128", "cfloat", "cdouble", "qint8", "quint8", "qint32",
		"strided", "sparse_coo", "contiguous_format", "channels_last", "preserve_format":
		return true
	}
	return false
}

// rebuildTensor implements torch._utils._rebuild_tensor_v2(storage,
// storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) and
// the older _rebuild_tensor(storage, storage_offset, size, stride).
func rebuildTensor(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("_rebuild_tensor: %d arguments, want at least 4", len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor: first argument is %T, not a storage", args[0])
	}
	off, ok := toInt64(args[1])
	if !ok || off < 0 {
		return nil, fmt.Errorf("_rebuild_tensor: bad storage offset %v", args[1])
	}
	size, err := toInt64s(args[2])
	if err != nil {
		return nil, fmt.Errorf("_rebuild_tensor: size: %v", err)
	}
	stride, err := toInt64s(args[3])
	if err != nil {
		return nil, fmt.Errorf("_rebuild_tensor: stride: %v", err)
	}
	if len(size) != len(stride) {
		return nil, fmt.Errorf("_rebuild_tensor: %d sizes but %d strides", len(size), len(stride))
	}
	return &tensorRef{st: st, offset: off, size: size, stride: stride}, nil
}

// rebuildParameter implements torch._utils._rebuild_parameter(data, ...) and
// Parameter.__new__(data, ...): a parameter is its data.
func rebuildParameter(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, fmt.Errorf("_rebuild_parameter: no arguments")
	}
	t, ok := args[0].(*tensorRef)
	if !ok {
		return nil, fmt.Errorf("_rebuild_parameter: data is %T, not a tensor", args[0])
	}
	return t, nil
}

// rebuildFromType implements torch._tensor._rebuild_from_type_v2(func, type,
// args, state) for tensors carrying python attributes.
func rebuildFromType(args ...any) (any, error) {
	if len(args) < 3 {
		return nil, fmt.Errorf("_rebuild_from_type_v2: %d arguments, want 4", len(args))
	}
	f, ok := args[0].(callFunc)
	if !ok {
		return nil, fmt.Errorf("_rebuild_from_type_v2: function is %T", args[0])
	}
	inner, ok := args[2].(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("_rebuild_from_type_v2: arguments are %T, not a tuple", args[2])
	}
	return f(*inner...)
}

// torchSize implements torch.Size(tuple).
func torchSize(args ...any) (any, error) {
	if len(args) == 0 {
		return types.NewTupleFromSlice(nil), nil
	}
	return args[0], nil
}

// makeSet implements set(iterable) and frozenset(iterable).
func makeSet(args ...any) (any, error) {
	s := types.NewSet()
	if len(args) > 0 {
		switch it := args[0].(type) {
		case *types.List:
			for _, v := range *it {
				s.Add(v)
			}
		case *types.Tuple:
			for _, v := range *it {
				s.Add(v)
			}
		}
	}
	return s, nil
}

// newObj implements copyreg.__newobj__(cls, *args).
func newObj(args ...any) (any, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("__newobj__: no class")
	}
	c, ok := args[0].(types.PyNewable)
	if !ok {
		return nil, fmt.Errorf("__newobj__: %T is not a class", args[0])
	}
	return c.PyNew(args[1:]...)
}

// codecsEncode implements _codecs.encode(str, 'latin1'), which protocol-2
// pickles use for bytes.
func codecsEncode(args ...any) (any, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("_codecs.encode: no arguments")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("_codecs.encode: %T is not a string", args[0])
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 255 {
			return nil, fmt.Errorf("_codecs.encode: character %U is not latin-1", r)
		}
		b = append(b, byte(r))
	}
	return b, nil
}

// toInt64 converts a pickled integer.
func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// toInt64s converts a pickled tuple or list of integers.
func toInt64s(v any) ([]int64, error) {
	var items []any
	switch x := v.(type) {
	case *types.Tuple:
		items = *x
	case *types.List:
		items = *x
	default:
		return nil, fmt.Errorf("%T is not a tuple", v)
	}
	if len(items) > 64 {
		return nil, fmt.Errorf("%d dimensions", len(items))
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, ok := toInt64(it)
		if !ok || n < 0 || n > math.MaxInt64/2 {
			return nil, fmt.Errorf("bad value %v", it)
		}
		out[i] = n
	}
	return out, nil
}
