package weights

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strconv"
)

// storageNames maps dtypes to torch's typed storage classes.
var storageNames = map[DType]string{
	Float32: "FloatStorage", Float64: "DoubleStorage", Float16: "HalfStorage",
	BFloat16: "BFloat16Storage", Int64: "LongStorage", Int32: "IntStorage",
	Int16: "ShortStorage", Int8: "CharStorage", Uint8: "ByteStorage", Bool: "BoolStorage",
}

// zipAlign is the alignment of record data in the archive, as torch.save uses.
const zipAlign = 64

// WriteTorchFile writes sd to path in torch.save's zip format, so that Python
// reads it with torch.load(path, weights_only=True) as an OrderedDict of
// tensors that model.load_state_dict accepts.
//
// metadata travels in the same file as attributes of that OrderedDict, the way
// PyTorch keeps its own _metadata: metadata[MetadataKey] (which must be JSON)
// becomes the attribute _modelstitch, any other key k becomes
// _modelstitch_<k> (k must be letters, digits and underscores). Python reads
// it with
//
//	sd = torch.load(path, weights_only=True)
//	meta = json.loads(sd._modelstitch)
//
// and load_state_dict ignores it. The file is written to a temporary name and
// renamed into place.
func WriteTorchFile(path string, sd *StateDict, metadata map[string]string) error {
	if err := sd.validate(); err != nil {
		return fmt.Errorf("weights: %s: %w", path, err)
	}
	attrs, err := metadataAttrs(metadata)
	if err != nil {
		return fmt.Errorf("weights: %s: %w", path, err)
	}
	pkl := encodeStateDict(sd, attrs)
	return writeAtomic(path, func(w io.Writer) error {
		zw := &torchZipWriter{zw: zip.NewWriter(w)}
		zw.add("archive/data.pkl", pkl)
		zw.add("archive/byteorder", []byte("little"))
		for i, k := range sd.Keys {
			zw.add("archive/data/"+strconv.Itoa(i), sd.Tensors[k].Data)
		}
		zw.add("archive/version", []byte("3\n"))
		if zw.err != nil {
			return zw.err
		}
		return zw.zw.Close()
	})
}

// metadataAttrs validates metadata and maps it to sorted attribute entries.
func metadataAttrs(metadata map[string]string) ([][2]string, error) {
	var attrs [][2]string
	for k, v := range metadata {
		if k == MetadataKey && !json.Valid([]byte(v)) {
			return nil, fmt.Errorf("metadata %q is not valid JSON", k)
		}
		if k == "" {
			return nil, fmt.Errorf("empty metadata key")
		}
		for _, r := range k {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return nil, fmt.Errorf("metadata key %q: only letters, digits and _ can become a Python attribute", k)
			}
		}
		attrs = append(attrs, [2]string{attrFromMetaKey(k), v})
	}
	sort.Slice(attrs, func(i, j int) bool { return attrs[i][0] < attrs[j][0] })
	return attrs, nil
}

// torchZipWriter writes stored (uncompressed) records with their data aligned
// to zipAlign bytes, padding with an "FB" extra field as torch does.
type torchZipWriter struct {
	zw     *zip.Writer
	offset int64
	err    error
}

func (t *torchZipWriter) add(name string, data []byte) {
	if t.err != nil {
		return
	}
	const localHeader = 30
	pad := (zipAlign - (t.offset+localHeader+int64(len(name))+4)%zipAlign) % zipAlign
	extra := make([]byte, 4+pad)
	extra[0], extra[1] = 'F', 'B'
	binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
	for i := 4; i < len(extra); i++ {
		extra[i] = 'Z'
	}
	fh := &zip.FileHeader{
		Name:               name,
		Method:             zip.Store,
		CRC32:              crc32.ChecksumIEEE(data),
		CompressedSize64:   uint64(len(data)),
		UncompressedSize64: uint64(len(data)),
		Extra:              extra,
		ReaderVersion:      20,
		CreatorVersion:     20,
		//lint:ignore SA1019 Modified would add an extended-timestamp extra field and break the 64-byte data alignment computed above
		ModifiedDate: 0x21, // 1980-01-01, for reproducible files
	}
	w, err := t.zw.CreateRaw(fh)
	if err == nil {
		_, err = w.Write(data)
	}
	t.err = err
	t.offset += localHeader + int64(len(name)) + int64(len(extra)) + int64(len(data))
}

// pickler emits the subset of pickle protocol 2 that PyTorch 1.13's
// weights_only unpickler accepts.
type pickler struct {
	b       bytes.Buffer
	globals map[string]int
	memo    int
}

func (p *pickler) put() {
	if p.memo < 256 {
		p.b.WriteByte('q')
		p.b.WriteByte(byte(p.memo))
	} else {
		p.b.WriteByte('r')
		binary.Write(&p.b, binary.LittleEndian, uint32(p.memo))
	}
	p.memo++
}

func (p *pickler) get(i int) {
	if i < 256 {
		p.b.WriteByte('h')
		p.b.WriteByte(byte(i))
	} else {
		p.b.WriteByte('j')
		binary.Write(&p.b, binary.LittleEndian, uint32(i))
	}
}

// global pushes module.name, memoising it.
func (p *pickler) global(module, name string) {
	full := module + "\n" + name + "\n"
	if i, ok := p.globals[full]; ok {
		p.get(i)
		return
	}
	p.b.WriteByte('c')
	p.b.WriteString(full)
	p.globals[full] = p.memo
	p.put()
}

func (p *pickler) str(s string) {
	p.b.WriteByte('X')
	binary.Write(&p.b, binary.LittleEndian, uint32(len(s)))
	p.b.WriteString(s)
}

func (p *pickler) int(n int64) {
	switch {
	case n >= 0 && n < 1<<8:
		p.b.WriteByte('K')
		p.b.WriteByte(byte(n))
	case n >= 0 && n < 1<<16:
		p.b.WriteByte('M')
		binary.Write(&p.b, binary.LittleEndian, uint16(n))
	case n >= -1<<31 && n < 1<<31:
		p.b.WriteByte('J')
		binary.Write(&p.b, binary.LittleEndian, int32(n))
	default: // LONG1: minimal little-endian two's complement
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], uint64(n))
		k := 8
		for k > 1 && (buf[k-1] == 0 && buf[k-2]&0x80 == 0 || buf[k-1] == 0xff && buf[k-2]&0x80 != 0) {
			k--
		}
		p.b.WriteByte(0x8a)
		p.b.WriteByte(byte(k))
		p.b.Write(buf[:k])
	}
}

func (p *pickler) ints(v []int64) {
	if len(v) == 0 {
		p.b.WriteByte(')')
		return
	}
	if len(v) > 3 {
		p.b.WriteByte('(')
	}
	for _, x := range v {
		p.int(x)
	}
	switch len(v) {
	case 1:
		p.b.WriteByte(0x85)
	case 2:
		p.b.WriteByte(0x86)
	case 3:
		p.b.WriteByte(0x87)
	default:
		p.b.WriteByte('t')
	}
}

// tensor emits _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()).
func (p *pickler) tensor(t *RawTensor, key string) {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.b.WriteByte('(')
	p.b.WriteByte('(')
	p.str("storage")
	p.global("torch", storageNames[t.DType])
	p.str(key)
	p.str("cpu")
	p.int(t.Numel())
	p.b.WriteByte('t')
	p.b.WriteByte('Q') // BINPERSID
	p.int(0)
	p.ints(t.Shape)
	stride := make([]int64, len(t.Shape))
	s := int64(1)
	for i := len(t.Shape) - 1; i >= 0; i-- {
		stride[i] = s
		s *= t.Shape[i]
	}
	p.ints(stride)
	p.b.WriteByte(0x89) // NEWFALSE
	p.global("collections", "OrderedDict")
	p.b.WriteByte(')')
	p.b.WriteByte('R')
	p.b.WriteByte('t')
	p.b.WriteByte('R')
}

// encodeStateDict pickles sd as an OrderedDict whose storages are the
// records data/0, data/1, ... in key order, with attrs set by BUILD.
func encodeStateDict(sd *StateDict, attrs [][2]string) []byte {
	p := &pickler{globals: map[string]int{}}
	p.b.Write([]byte{0x80, 2})
	p.global("collections", "OrderedDict")
	p.b.WriteByte(')')
	p.b.WriteByte('R')
	p.put()
	for start := 0; start < len(sd.Keys); start += 1000 {
		end := min(start+1000, len(sd.Keys))
		p.b.WriteByte('(')
		for i := start; i < end; i++ {
			k := sd.Keys[i]
			p.str(k)
			p.tensor(sd.Tensors[k], strconv.Itoa(i))
		}
		p.b.WriteByte('u')
	}
	if len(attrs) > 0 {
		p.b.WriteByte('}')
		p.b.WriteByte('(')
		for _, a := range attrs {
			p.str(a[0])
			p.str(a[1])
		}
		p.b.WriteByte('u')
		p.b.WriteByte('b') // BUILD: OrderedDict.__dict__.update(state)
	}
	p.b.WriteByte('.')
	return p.b.Bytes()
}
