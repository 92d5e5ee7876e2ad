package weights

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Checkpoint formats, as reported in Checkpoint.Format.
const (
	FormatTorchZip    = "torch-zip"
	FormatTorchLegacy = "torch-legacy"
	FormatSafetensors = "safetensors"
	FormatTorchScript = "torchscript"
)

// MetadataKey is the Checkpoint.Metadata entry that holds modelstitch's own
// metadata, a JSON document (architecture, data set, normalisation, training
// configuration). In a torch.save file it travels as the attribute
// _modelstitch of the state dict; in a safetensors file as a __metadata__ entry.
const MetadataKey = "modelstitch"

// ErrTorchScript is returned (wrapped) for TorchScript archives
// (torch.jit.save), which must be loaded through libtorch instead.
var ErrTorchScript = errors.New("a TorchScript archive (load it with torch::jit::load)")

// ErrNoMetadata is returned (wrapped) by ModelstitchMeta when the checkpoint
// carries no modelstitch metadata.
var ErrNoMetadata = errors.New("no modelstitch metadata")

// Checkpoint is what a file holds: its format, the state dict as stored,
// and metadata. (weights/resnetkeys brings the state dict to torchvision's
// ResNet names.)
type Checkpoint struct {
	// Path is the file it was read from ("" when read from memory).
	Path string
	// Format is FormatTorchZip, FormatTorchLegacy, FormatSafetensors or FormatTorchScript.
	Format string
	// State holds the tensors under the names the file gives them.
	State *StateDict
	// Metadata holds string metadata: MetadataKey for modelstitch's JSON, a
	// safetensors file's __metadata__, and plain values found beside the
	// state dict in a wrapper (epoch, arch, pytorch-lightning_version, ...).
	Metadata map[string]string
	// Notes says, one line each, what was done to find the state dict
	// (e.g. "state dict found under state_dict; ignored entries optimizer").
	Notes []string
	// KeyPrefix is the part of ReadOptions.Key that named no wrapper entry:
	// a prefix of the state dict's keys, which the key mapping
	// (resnetkeys.Resolve) keeps ("": none).
	KeyPrefix string
}

// ModelstitchMeta decodes the modelstitch metadata (Metadata[MetadataKey]) into v.
func (c *Checkpoint) ModelstitchMeta(v any) error {
	s, ok := c.Metadata[MetadataKey]
	if !ok {
		return fmt.Errorf("weights: %s: %w", c.name(), ErrNoMetadata)
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("weights: %s: decoding modelstitch metadata: %w", c.name(), err)
	}
	return nil
}

func (c *Checkpoint) name() string {
	if c.Path == "" {
		return "<memory>"
	}
	return c.Path
}

// Open reads a checkpoint, choosing the reader from the file's contents: a zip
// archive is a torch.save file (or a TorchScript archive, which gives an error
// wrapping ErrTorchScript), a pickle stream starting with torch's magic number
// a legacy torch.save file, and a little-endian length followed by a JSON
// object a safetensors file. The state dict comes back as stored: its keys
// are the file's (resnetkeys.Resolve brings them to torchvision's names).
func Open(path string) (*Checkpoint, error) { return OpenWith(path, ReadOptions{}) }

// OptionError is an error about the value of one of ReadOptions' fields,
// named in lower-case words ("key"): "key module.x: no key starts with
// ...". Its SettingField method lets a front end name the option its own
// way (experiments/invalid.Rename renames it as it does its own settings).
type OptionError struct {
	Option  string // the field, in words: "key"
	Problem string // what is wrong, after the field's name
}

// Error is the option's name followed by the problem.
func (e *OptionError) Error() string { return e.Option + " " + e.Problem }

// SettingField is the option the error is about.
func (e *OptionError) SettingField() string { return e.Option }

// ReadOptions change how a checkpoint's state dict is found.
type ReadOptions struct {
	// Key picks a sub-network or prefix explicitly, overriding the choice
	// among several networks (resnetkeys.RoleRule): a dotted path of wrapper
	// entries (e.g. target_network_state_dict, student), a prefix of the
	// state dict's keys (e.g. module.encoder_k), or a wrapper path followed
	// by a key prefix. The reader follows the wrapper entries; the rest is
	// the Checkpoint's KeyPrefix, for the key mapping. "" chooses
	// automatically.
	Key string
}

// OpenWith is Open with options.
func OpenWith(path string, opt ReadOptions) (*Checkpoint, error) {
	return readPath(path, func(r io.ReaderAt, size int64) (*Checkpoint, error) { return readAny(r, size, path, opt) })
}

// ReadFrom is OpenWith for a file already open (size bytes read through r),
// e.g. a shipped checkpoint (defaults.Open); name is its path, for errors
// and Checkpoint.Path.
func ReadFrom(r io.ReaderAt, size int64, name string, opt ReadOptions) (*Checkpoint, error) {
	return readNamed(r, size, name, func(r io.ReaderAt, size int64) (*Checkpoint, error) { return readAny(r, size, name, opt) })
}

// readAny reads a checkpoint of any format, choosing the reader from its
// first bytes (and, failing that, from name's extension).
func readAny(r io.ReaderAt, size int64, name string, opt ReadOptions) (*Checkpoint, error) {
	var head [9]byte
	n, err := r.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	var read func(r io.ReaderAt, size int64, opt ReadOptions) (*Checkpoint, error)
	switch {
	case n == 0:
		return nil, errors.New("empty file")
	case n == 9 && head[8] == '{' && binary.LittleEndian.Uint64(head[:8]) <= uint64(size-8):
		// Checked first: a header length of 128 mod 256 starts with 0x80 like a
		// pickle, while a zip or pickle never has a plausible length here.
		read = readSafetensors
	case n >= 4 && (string(head[:4]) == "PK\x03\x04" || string(head[:4]) == "PK\x05\x06"), head[0] == 0x80:
		read = readTorch
	case strings.HasSuffix(strings.ToLower(name), ".safetensors"):
		read = readSafetensors
	default:
		return nil, fmt.Errorf("unknown checkpoint format (not a torch.save zip or legacy file, "+
			"TorchScript archive or safetensors file; starts with % x)", head[:n])
	}
	return read(r, size, opt)
}
