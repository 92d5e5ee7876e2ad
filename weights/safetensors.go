package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"modelstitch/internal/atomicfile"
)

// maxSafetensorsHeader is the largest JSON header accepted (the reference
// implementation's limit).
const maxSafetensorsHeader = 100 << 20

var safetensorsDTypes = map[string]DType{
	"F32": Float32, "F64": Float64, "F16": Float16, "BF16": BFloat16,
	"I64": Int64, "I32": Int32, "I16": Int16, "I8": Int8, "U8": Uint8, "BOOL": Bool,
}

func safetensorsName(d DType) string {
	for k, v := range safetensorsDTypes {
		if v == d {
			return k
		}
	}
	return ""
}

// safetensorsEntry is one tensor's header entry.
type safetensorsEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// ReadSafetensors reads a safetensors file: an 8-byte little-endian header
// length, a JSON header (tensor name → dtype, shape, data_offsets, plus an
// optional __metadata__ string map) and the tensor bytes. Keys are as
// stored, in the header's order; __metadata__ becomes Checkpoint.Metadata.
func ReadSafetensors(path string) (*Checkpoint, error) {
	return ReadSafetensorsWith(path, ReadOptions{})
}

// ReadSafetensorsWith is ReadSafetensors with options (see ReadOptions).
func ReadSafetensorsWith(path string, opt ReadOptions) (*Checkpoint, error) {
	return readPath(path, func(r io.ReaderAt, size int64) (*Checkpoint, error) { return readSafetensors(r, size, opt) })
}

// ReadSafetensorsBytes is ReadSafetensors for a file's contents held in memory.
func ReadSafetensorsBytes(data []byte) (*Checkpoint, error) {
	return readMemory(data, func(r io.ReaderAt, size int64) (*Checkpoint, error) { return readSafetensors(r, size, ReadOptions{}) })
}

func readSafetensors(r io.ReaderAt, size int64, opt ReadOptions) (*Checkpoint, error) {
	if size == 0 {
		return nil, errors.New("empty file")
	}
	if size < 8 {
		return nil, errors.New("safetensors: file shorter than its 8-byte header length")
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, err
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	if hlen > uint64(size-8) {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the file (%d bytes)", hlen, size)
	}
	if hlen > maxSafetensorsHeader {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the %d-byte limit", hlen, maxSafetensorsHeader)
	}
	header := make([]byte, hlen)
	if _, err := r.ReadAt(header, 8); err != nil && !(err == io.EOF && int64(len(header)) == size-8) {
		return nil, err
	}
	dataStart := 8 + int64(hlen)
	dataLen := size - dataStart

	dec := json.NewDecoder(bytes.NewReader(header))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("safetensors: header is not a JSON object")
	}
	ck := &Checkpoint{Format: FormatSafetensors, State: NewStateDict(), Metadata: map[string]string{}}
	type span struct {
		key        string
		begin, end int64
	}
	var spans []span
	entries := map[string]safetensorsEntry{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("safetensors: header: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("safetensors: header key is not a string")
		}
		if key == "__metadata__" {
			var meta map[string]string
			if err := dec.Decode(&meta); err != nil {
				return nil, fmt.Errorf("safetensors: __metadata__ is not a string map: %v", err)
			}
			for k, v := range meta {
				ck.Metadata[k] = v
			}
			continue
		}
		var e safetensorsEntry
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %s: bad header entry: %v", quoteName(key), err)
		}
		if _, dup := entries[key]; dup {
			return nil, fmt.Errorf("safetensors: tensor %s appears twice", quoteName(key))
		}
		dt, ok := safetensorsDTypes[e.DType]
		if !ok {
			return nil, fmt.Errorf("safetensors: tensor %s: unsupported dtype %s", quoteName(key), quoteName(e.DType))
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("safetensors: tensor %s: data_offsets must have 2 entries, has %d", quoteName(key), len(e.DataOffsets))
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || end < b || end > dataLen {
			return nil, fmt.Errorf("safetensors: tensor %s: data_offsets [%d, %d] outside the %d data bytes", quoteName(key), b, end, dataLen)
		}
		nb, ok := byteSize(e.Shape, dt)
		if !ok || len(e.Shape) > 64 {
			return nil, fmt.Errorf("safetensors: tensor %s: invalid shape %v", quoteName(key), e.Shape)
		}
		if nb != end-b {
			return nil, fmt.Errorf("safetensors: tensor %s: shape %v of %s needs %d bytes, data_offsets give %d", quoteName(key), e.Shape, e.DType, nb, end-b)
		}
		entries[key] = e
		spans = append(spans, span{key, b, end})
		ck.State.Keys = append(ck.State.Keys, key)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("safetensors: header: %v", err)
	}
	// Tensors must tile the data without overlapping (as the reference
	// implementation requires); this also bounds memory by the file size.
	sorted := append([]span(nil), spans...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].begin != sorted[j].begin {
			return sorted[i].begin < sorted[j].begin
		}
		return sorted[i].end < sorted[j].end
	})
	var at int64
	for _, s := range sorted {
		if s.begin != at {
			return nil, fmt.Errorf("safetensors: tensor %s: data starts at %d, expected %d (gap or overlap)", quoteName(s.key), s.begin, at)
		}
		at = s.end
	}
	if at != dataLen {
		return nil, fmt.Errorf("safetensors: tensors cover %d of the %d data bytes", at, dataLen)
	}
	for _, s := range spans {
		e := entries[s.key]
		buf := make([]byte, s.end-s.begin)
		if _, err := r.ReadAt(buf, dataStart+s.begin); err != nil && !(err == io.EOF && dataStart+s.end == size) {
			return nil, fmt.Errorf("safetensors: tensor %s: %v", quoteName(s.key), err)
		}
		ck.State.Tensors[s.key] = &RawTensor{DType: safetensorsDTypes[e.DType], Shape: append([]int64{}, e.Shape...), Data: buf}
	}
	ck.KeyPrefix = opt.Key
	return ck, nil
}

// WriteSafetensors writes sd to path in the safetensors format, keys in
// sd.Keys order, with metadata (if any) as the header's __metadata__. The
// file is written to a temporary name and renamed into place.
func WriteSafetensors(path string, sd *StateDict, metadata map[string]string) error {
	if err := sd.validate(); err != nil {
		return fmt.Errorf("weights: %s: %w", path, err)
	}
	// json.Marshal of a map sorts keys; build the header by hand to keep order.
	var h bytes.Buffer
	h.WriteByte('{')
	if len(metadata) > 0 {
		mb, err := json.Marshal(metadata)
		if err != nil {
			return fmt.Errorf("weights: %s: %w", path, err)
		}
		h.WriteString(`"__metadata__":`)
		h.Write(mb)
	}
	var off int64
	for i, k := range sd.Keys {
		if k == "__metadata__" {
			return fmt.Errorf("weights: %s: a tensor cannot be named __metadata__", path)
		}
		t := sd.Tensors[k]
		name := safetensorsName(t.DType)
		if name == "" {
			return fmt.Errorf("weights: %s: tensor %q: dtype %s has no safetensors name", path, k, t.DType)
		}
		if i > 0 || len(metadata) > 0 {
			h.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		eb, _ := json.Marshal(safetensorsEntry{DType: name, Shape: shape, DataOffsets: []int64{off, off + int64(len(t.Data))}})
		h.Write(kb)
		h.WriteByte(':')
		h.Write(eb)
		off += int64(len(t.Data))
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	return writeAtomic(path, func(w io.Writer) error {
		var lenBuf [8]byte
		binary.LittleEndian.PutUint64(lenBuf[:], uint64(h.Len()))
		if _, err := w.Write(lenBuf[:]); err != nil {
			return err
		}
		if _, err := w.Write(h.Bytes()); err != nil {
			return err
		}
		for _, k := range sd.Keys {
			if _, err := w.Write(sd.Tensors[k].Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeAtomic writes a file through a temporary file in the same directory
// (internal/atomicfile: flushed, renamed into place only when write
// succeeded, and stale temporary files of killed writers removed).
func writeAtomic(path string, write func(io.Writer) error) error {
	if err := atomicfile.Write(path, 0o644, func(f *os.File) error { return write(f) }); err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	return nil
}
