package weights

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/nlpodyssey/gopickle/types"
)

// legacyMagic is the number a legacy (non-zip) torch.save file starts with.
const legacyMagic = "1950a86a20f9469cfc6c"

// ReadTorchFile reads a file written by torch.save, in the zip format (the
// default since PyTorch 1.6) or the legacy format, and finds the state dict
// in it, its keys as stored (resnetkeys.Resolve maps them). A TorchScript
// archive gives an error wrapping ErrTorchScript.
func ReadTorchFile(path string) (*Checkpoint, error) { return ReadTorchFileWith(path, ReadOptions{}) }

// ReadTorchFileWith is ReadTorchFile with options (see ReadOptions).
func ReadTorchFileWith(path string, opt ReadOptions) (*Checkpoint, error) {
	return readPath(path, func(r io.ReaderAt, size int64) (*Checkpoint, error) { return readTorch(r, size, opt) })
}

// ReadTorchBytes is ReadTorchFile for a file's contents held in memory.
func ReadTorchBytes(data []byte) (*Checkpoint, error) { return ReadTorchBytesWith(data, ReadOptions{}) }

// ReadTorchBytesWith is ReadTorchBytes with options (see ReadOptions).
func ReadTorchBytesWith(data []byte, opt ReadOptions) (*Checkpoint, error) {
	return readMemory(data, func(r io.ReaderAt, size int64) (*Checkpoint, error) { return readTorch(r, size, opt) })
}

// readPath opens path and reads it with read, naming the file in errors.
func readPath(path string, read func(r io.ReaderAt, size int64) (*Checkpoint, error)) (*Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("weights: %s: is a directory, not a checkpoint file", path)
	}
	return readNamed(f, st.Size(), path, read)
}

// readNamed reads with read, naming the file in errors and in the result.
func readNamed(r io.ReaderAt, size int64, name string, read func(r io.ReaderAt, size int64) (*Checkpoint, error)) (*Checkpoint, error) {
	ck, err := read(r, size)
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %w", name, err)
	}
	ck.Path = name
	return ck, nil
}

// readMemory reads a file's contents held in memory with read.
func readMemory(data []byte, read func(r io.ReaderAt, size int64) (*Checkpoint, error)) (*Checkpoint, error) {
	ck, err := read(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	return ck, nil
}

// storagePID parses a torch.save persistent id ('storage', class, key,
// location, numel), shared by the torch.save reader and the TorchScript check:
// the storage's class, record key, element count and size in bytes.
func storagePID(pid any) (cls *storageClass, key string, n, nbytes int64, err error) {
	tup, ok := pid.(*types.Tuple)
	if !ok || tup.Len() < 5 {
		return nil, "", 0, 0, fmt.Errorf("persistent id %v is not ('storage', type, key, location, numel)", describe(pid))
	}
	if s, _ := tup.Get(0).(string); s != "storage" {
		return nil, "", 0, 0, fmt.Errorf("persistent id of kind %v, only 'storage' is supported", describe(tup.Get(0)))
	}
	if cls, key, n, err = storageID(tup); err != nil {
		return nil, "", 0, 0, err
	}
	if nbytes, ok = byteSize([]int64{n}, cls.dtype); !ok {
		return nil, "", 0, 0, fmt.Errorf("storage %s: bad element count %d", quoteName(key), n)
	}
	return cls, key, n, nbytes, nil
}

// storageID reads the storage class, key and element count of a persistent
// id ('storage', class, key, location, numel, ...), already checked to have
// five entries.
func storageID(tup *types.Tuple) (*storageClass, string, int64, error) {
	cls, ok := tup.Get(1).(*storageClass)
	if !ok {
		return nil, "", 0, fmt.Errorf("unsupported storage type %v", describe(tup.Get(1)))
	}
	key, ok := tup.Get(2).(string)
	if !ok {
		return nil, "", 0, fmt.Errorf("storage key is %T, not a string", tup.Get(2))
	}
	n, ok := toInt64(tup.Get(4))
	if !ok || n < 0 {
		return nil, "", 0, fmt.Errorf("storage %s: bad element count %v", quoteName(key), describe(tup.Get(4)))
	}
	return cls, key, n, nil
}

// readTorch dispatches on the first bytes: zip or legacy pickle stream.
func readTorch(r io.ReaderAt, size int64, opt ReadOptions) (*Checkpoint, error) {
	var head [4]byte
	n, _ := r.ReadAt(head[:], 0)
	switch {
	case size == 0:
		return nil, errors.New("empty file")
	case n >= 4 && string(head[:4]) == "PK\x03\x04" || n >= 4 && string(head[:4]) == "PK\x05\x06":
		return readTorchZip(r, size, opt)
	case n >= 1 && head[0] == 0x80:
		return readTorchLegacy(r, size, opt)
	}
	return nil, errors.New("not a torch.save file (neither a zip archive nor a legacy pickle)")
}

// readTorchZip reads the zip format: <dir>/data.pkl plus <dir>/data/<key>
// records holding the storages.
func readTorchZip(r io.ReaderAt, size int64, opt ReadOptions) (*Checkpoint, error) {
	z, err := openZip(r, size)
	if err != nil {
		return nil, err
	}
	records := z.records
	var pkl *zip.File
	for _, f := range z.files {
		dir, base := path.Split(f.Name)
		if base == "constants.pkl" || strings.HasPrefix(f.Name, "code/") || strings.Contains(f.Name, "/code/") {
			return nil, ErrTorchScript
		}
		if base == "data.pkl" && strings.Count(dir, "/") == 1 && pkl == nil {
			pkl = f
		}
	}
	if pkl == nil {
		return nil, errors.New("zip archive has no <dir>/data.pkl: not a torch.save file")
	}
	for _, f := range z.files {
		if err := refuseCompressed(f); err != nil {
			return nil, err
		}
	}
	prefix := strings.TrimSuffix(pkl.Name, "data.pkl")
	bigEndian := false
	if bo, ok := records[prefix+"byteorder"]; ok {
		b, err := readRecord(bo, bo.UncompressedSize64, size)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(string(b)) {
		case "little":
		case "big":
			bigEndian = true
		default:
			return nil, fmt.Errorf("unknown byteorder %s", quoteName(string(b)))
		}
	}
	data, err := readRecord(pkl, pkl.UncompressedSize64, size)
	if err != nil {
		return nil, err
	}
	storages := map[string]*storage{}
	persistentLoad := func(pid any) (any, error) {
		cls, key, n, nbytes, err := storagePID(pid)
		if err != nil {
			return nil, err
		}
		id := key + "\x00" + string(cls.dtype)
		if st, ok := storages[id]; ok {
			return &storageRef{st: st, numel: st.numel}, nil
		}
		rec, ok := records[prefix+"data/"+key]
		if !ok {
			return nil, fmt.Errorf("storage %s: no record %s in the archive", quoteName(key), quoteName(prefix+"data/"+key))
		}
		st := &storage{key: key, dtype: cls.dtype, numel: n}
		st.load = func() ([]byte, error) {
			b, err := readRecord(rec, uint64(nbytes), size)
			if err != nil {
				return nil, err
			}
			if bigEndian {
				swapBytes(b, cls.dtype.Size())
			}
			return b, nil
		}
		storages[id] = st
		return &storageRef{st: st, numel: n}, nil
	}
	obj, _, err := unpickle(data, persistentLoad)
	var ug *UnsafeGlobalError
	if errors.As(err, &ug) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", quoteName(pkl.Name), err)
	}
	return checkpointFrom(obj, FormatTorchZip, size, opt)
}

// readTorchLegacy reads the legacy format: pickles of the magic number, the
// protocol version and system info, then the object, then the list of storage
// keys, then each storage as an 8-byte element count and its bytes.
func readTorchLegacy(r io.ReaderAt, size int64, opt ReadOptions) (*Checkpoint, error) {
	data := make([]byte, size)
	if _, err := r.ReadAt(data, 0); err != nil && err != io.EOF {
		return nil, err
	}
	magic, off, err := unpickle(data, nil)
	if err != nil {
		return nil, fmt.Errorf("legacy header: %w", err)
	}
	if m, ok := magic.(*big.Int); !ok || m.Text(16) != legacyMagic {
		return nil, errors.New("a pickle, but not a torch.save file (no legacy magic number)")
	}
	proto, n, err := unpickle(data[off:], nil)
	if err != nil {
		return nil, fmt.Errorf("legacy header: %w", err)
	}
	off += n
	if p, ok := proto.(int); !ok || p != 1001 {
		return nil, fmt.Errorf("unsupported legacy protocol version %v", describe(proto))
	}
	sysInfo, n, err := unpickle(data[off:], nil)
	if err != nil {
		return nil, fmt.Errorf("legacy header: %w", err)
	}
	off += n
	bigEndian := false
	if d, ok := sysInfo.(*types.Dict); ok {
		for _, e := range *d {
			if e.Key == "little_endian" && e.Value == false {
				bigEndian = true
			}
		}
	}
	storages := map[string]*storage{}
	persistentLoad := func(pid any) (any, error) {
		tup, ok := pid.(*types.Tuple)
		if !ok || tup.Len() < 1 {
			return nil, fmt.Errorf("persistent id %v is not a tuple", describe(pid))
		}
		if s, _ := tup.Get(0).(string); s == "module" && tup.Len() >= 2 {
			return tup.Get(1), nil // a module's class with its source code; inert here
		}
		if s, _ := tup.Get(0).(string); s != "storage" || tup.Len() < 5 {
			return nil, fmt.Errorf("persistent id %v is not ('storage', type, key, location, numel, view)", describe(pid))
		}
		cls, key, n, err := storageID(tup)
		if err != nil {
			return nil, err
		}
		st, ok := storages[key]
		if !ok {
			st = &storage{key: key, dtype: cls.dtype, numel: n}
			storages[key] = st
		} else if st.dtype != cls.dtype {
			return nil, fmt.Errorf("storage %s used as %s and %s", quoteName(key), st.dtype, cls.dtype)
		}
		ref := &storageRef{st: st, numel: n}
		if tup.Len() >= 6 && tup.Get(5) != nil {
			view, ok := tup.Get(5).(*types.Tuple)
			if !ok || view.Len() != 3 {
				return nil, fmt.Errorf("storage %s: bad view %v", quoteName(key), describe(tup.Get(5)))
			}
			vo, ok1 := toInt64(view.Get(1))
			vn, ok2 := toInt64(view.Get(2))
			if !ok1 || !ok2 || vo < 0 || vn < 0 || vo > n || vn > n-vo {
				return nil, fmt.Errorf("storage %s: view %v out of range", quoteName(key), describe(view))
			}
			ref.off, ref.numel = vo, vn
		}
		return ref, nil
	}
	obj, n, err := unpickle(data[off:], persistentLoad)
	if err != nil {
		return nil, err
	}
	off += n
	keysObj, n, err := unpickle(data[off:], nil)
	if err != nil {
		return nil, fmt.Errorf("storage key list: %w", err)
	}
	off += n
	keys, ok := keysObj.(*types.List)
	if !ok {
		return nil, fmt.Errorf("storage key list is %s", describe(keysObj))
	}
	for _, k := range *keys {
		key, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("storage key %v is not a string", describe(k))
		}
		st, ok := storages[key]
		if !ok {
			return nil, fmt.Errorf("storage %s is listed but not used by the pickle", quoteName(key))
		}
		if len(data)-off < 8 {
			return nil, fmt.Errorf("storage %s: file truncated", quoteName(key))
		}
		var cnt uint64
		for i := 0; i < 8; i++ {
			if bigEndian {
				cnt = cnt<<8 | uint64(data[off+i])
			} else {
				cnt |= uint64(data[off+i]) << (8 * i)
			}
		}
		off += 8
		es := uint64(st.dtype.Size())
		if cnt > uint64(len(data)-off)/es {
			return nil, fmt.Errorf("storage %s: %d elements do not fit in the file", quoteName(key), cnt)
		}
		if int64(cnt) < st.numel {
			return nil, fmt.Errorf("storage %s: file holds %d elements, pickle says %d", quoteName(key), cnt, st.numel)
		}
		nb := int(cnt * es)
		st.data = append([]byte(nil), data[off:off+nb]...)
		if bigEndian {
			swapBytes(st.data, int(es))
		}
		st.numel = int64(cnt)
		off += nb
	}
	return checkpointFrom(obj, FormatTorchLegacy, size, opt)
}

// swapBytes reverses the byte order of every element of size es in b.
func swapBytes(b []byte, es int) {
	if es <= 1 {
		return
	}
	for i := 0; i+es <= len(b); i += es {
		for a, z := i, i+es-1; a < z; a, z = a+1, z-1 {
			b[a], b[z] = b[z], b[a]
		}
	}
}

// maxExpand bounds the bytes a tensor may take beyond its storage's size (a
// stride-0 view can describe a huge tensor over one element).
const maxExpand = 1 << 28

// materialize copies a tensor's view out of its storage into a contiguous
// row-major RawTensor.
func (t *tensorRef) materialize() (*RawTensor, error) {
	st := t.st.st
	es := int64(st.dtype.Size())
	if es == 0 {
		return nil, fmt.Errorf("storage %s has unknown dtype", quoteName(st.key))
	}
	n, ok := numel(t.size)
	if !ok {
		return nil, fmt.Errorf("bad size %v", t.size)
	}
	nbytes, ok := byteSize(t.size, st.dtype)
	if !ok {
		return nil, fmt.Errorf("bad size %v", t.size)
	}
	out := &RawTensor{DType: st.dtype, Shape: append([]int64{}, t.size...)}
	if n == 0 {
		out.Data = []byte{}
		return out, nil
	}
	if err := t.checkView(); err != nil {
		return nil, err
	}
	if nbytes > maxExpand && nbytes > st.numel*es {
		return nil, fmt.Errorf("view of size %v expands a storage of %d elements to %d bytes", t.size, st.numel, nbytes)
	}
	src, err := st.bytes()
	if err != nil {
		return nil, err
	}
	if int64(len(src)) < st.numel*es {
		return nil, fmt.Errorf("storage %s holds %d bytes, need %d", quoteName(st.key), len(src), st.numel*es)
	}
	base := (t.st.off + t.offset) * es
	// Contiguous fast path: strides are row-major (ignoring size-1 dims).
	contiguous, expect := true, int64(1)
	for i := len(t.size) - 1; i >= 0; i-- {
		if t.size[i] != 1 && t.stride[i] != expect {
			contiguous = false
			break
		}
		expect *= t.size[i]
	}
	if contiguous {
		out.Data = append([]byte(nil), src[base:base+nbytes]...)
		return out, nil
	}
	out.Data = make([]byte, nbytes)
	idx := make([]int64, len(t.size))
	pos := base
	for o := int64(0); o < nbytes; o += es {
		copy(out.Data[o:o+es], src[pos:pos+es])
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			pos += t.stride[d] * es
			if idx[d] < t.size[d] {
				break
			}
			pos -= t.size[d] * t.stride[d] * es
			idx[d] = 0
		}
	}
	return out, nil
}

// checkView checks that the last element the tensor's view touches lies
// inside its (view of the) storage.
func (t *tensorRef) checkView() error {
	n, ok := numel(t.size)
	if !ok {
		return fmt.Errorf("bad size %v", t.size)
	}
	if n == 0 {
		return nil
	}
	last := t.offset
	for i, s := range t.size {
		step := t.stride[i]
		if step != 0 && s-1 > (math.MaxInt64/4-last)/step {
			return fmt.Errorf("size %v with stride %v overflows", t.size, t.stride)
		}
		last += (s - 1) * step
	}
	if last >= t.st.numel || t.st.off+t.st.numel > t.st.st.numel {
		return fmt.Errorf("view (offset %d, size %v, stride %v) reaches element %d of a storage of %d",
			t.offset, t.size, t.stride, last, t.st.numel)
	}
	return nil
}

// describe renders a pickled value briefly for error messages.
func describe(v any) string { return describeDepth(v, 0) }

func describeDepth(v any, depth int) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return strconv.Quote(x)
	case int, bool, float64:
		return fmt.Sprint(x)
	case *pyClass:
		return x.String()
	case *pyObject:
		return x.Class.String() + " object"
	case *storageClass:
		return "torch." + x.name
	case *tensorRef:
		return fmt.Sprintf("tensor%v", x.size)
	case *types.Tuple:
		parts := make([]string, 0, len(*x))
		for i, e := range *x {
			if i == 6 {
				parts = append(parts, "...")
				break
			}
			if depth > 3 {
				parts = append(parts, "...")
				break
			}
			parts = append(parts, describeDepth(e, depth+1))
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	return fmt.Sprintf("%T", v)
}
