package weights

import (
	"archive/zip"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The zip layer shared by the torch.save zip reader and the TorchScript check.
// PyTorch's writers (torch.save, torch.jit.save) store every record
// uncompressed, once, with its CRC-32; anything else is a damaged or crafted file.

// zipArchive is a zip file whose directory has passed openZip's checks.
type zipArchive struct {
	files   []*zip.File          // in the directory's order
	records map[string]*zip.File // by name, each name once
	size    int64                // the file's size
}

// Compressed records (TorchScript deflates its code/ records; nothing else in
// PyTorch's files is compressed) may expand, all together, to at most
// maxExpandFactor times the file's size plus maxExpandSlack bytes.
const (
	maxExpandFactor = 4
	maxExpandSlack  = 16 << 20
)

// openZip reads a zip directory and refuses what would let a small file make
// the reader read or allocate much, or leave it unclear which bytes are meant:
// a stored record larger than the file, compressed records expanding beyond
// maxExpandFactor times the file's size (a deflate bomb expands 1000:1), a
// compression method other than deflate, and a name that appears twice
// (PyTorch loads one copy, other tools another).
func openZip(r io.ReaderAt, size int64) (*zipArchive, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("reading zip: %w", err)
	}
	z := &zipArchive{files: zr.File, records: make(map[string]*zip.File, len(zr.File)), size: size}
	expanded, budget := uint64(0), uint64(maxExpandFactor)*uint64(size)+maxExpandSlack
	for _, f := range zr.File {
		if _, dup := z.records[f.Name]; dup {
			return nil, fmt.Errorf("record %s appears twice in the archive (PyTorch would read one copy, other tools the other): refusing the file", quoteName(f.Name))
		}
		z.records[f.Name] = f
		switch f.Method {
		case zip.Store:
			if f.UncompressedSize64 != f.CompressedSize64 || f.UncompressedSize64 > uint64(size) {
				return nil, fmt.Errorf("record %s claims %d bytes (%d stored) in a file of %d bytes", quoteName(f.Name), f.UncompressedSize64, f.CompressedSize64, size)
			}
		case zip.Deflate:
			if f.CompressedSize64 > uint64(size) || f.UncompressedSize64 > budget-expanded {
				return nil, fmt.Errorf("record %s expands %d bytes to %d: the compressed records would take more than %d times the file's size", quoteName(f.Name), f.CompressedSize64, f.UncompressedSize64, maxExpandFactor)
			}
			expanded += f.UncompressedSize64
		default:
			return nil, fmt.Errorf("record %s uses unsupported zip method %d", quoteName(f.Name), f.Method)
		}
	}
	return z, nil
}

// refuseCompressed refuses a compressed record where PyTorch writes only
// stored ones (every record of a torch.save file; tensors and pickles of a
// TorchScript archive).
func refuseCompressed(f *zip.File) error {
	if f.Method != zip.Store {
		return fmt.Errorf("record %s is compressed (zip method %d): PyTorch never compresses it, so the file was re-packed or crafted; refusing it", quoteName(f.Name), f.Method)
	}
	return nil
}

// readRecord reads a whole record, checks its CRC-32 and returns its first n
// bytes; n must not exceed the record's size.
func readRecord(f *zip.File, n uint64, fileSize int64) ([]byte, error) {
	name := quoteName(f.Name)
	if n > f.UncompressedSize64 {
		return nil, fmt.Errorf("record %s holds %d bytes, need %d", name, f.UncompressedSize64, n)
	}
	if err := refuseCompressed(f); err != nil {
		return nil, err
	}
	if f.UncompressedSize64 > uint64(fileSize) {
		return nil, fmt.Errorf("record %s claims %d bytes, more than the file's %d", name, f.UncompressedSize64, fileSize)
	}
	if f.UncompressedSize64 > math.MaxInt32*4 {
		return nil, fmt.Errorf("record %s is too large (%d bytes)", name, f.UncompressedSize64)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", name, err)
	}
	defer rc.Close()
	b := make([]byte, f.UncompressedSize64)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("record %s: %w", name, err)
	}
	if err := checkCRC(f, crc32.ChecksumIEEE(b)); err != nil {
		return nil, err
	}
	return b[:n], nil
}

// checkRecordCRC streams a record and checks its CRC-32, without holding it.
func checkRecordCRC(f *zip.File) error {
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("record %s: %w", quoteName(f.Name), err)
	}
	defer rc.Close()
	h := crc32.NewIEEE()
	n, err := io.Copy(h, rc)
	if err != nil && err != zip.ErrChecksum {
		return fmt.Errorf("record %s: %w", quoteName(f.Name), err)
	}
	if uint64(n) != f.UncompressedSize64 {
		return fmt.Errorf("record %s: read %d bytes, the directory says %d", quoteName(f.Name), n, f.UncompressedSize64)
	}
	return checkCRC(f, h.Sum32())
}

// checkCRC compares a record's computed CRC-32 with the one the archive
// records (archive/zip skips the check when the recorded CRC is 0; we do not).
func checkCRC(f *zip.File, sum uint32) error {
	if sum != f.CRC32 {
		return fmt.Errorf("record %s is damaged: CRC-32 %08x, the archive says %08x", quoteName(f.Name), sum, f.CRC32)
	}
	return nil
}

// maxNameInError is how much of a name taken from a file an error message shows.
const maxNameInError = 120

// quoteName renders a name read from a file for an error message: quoted
// with Go escapes (so control characters and terminal escape codes never
// reach a terminal raw) and cut to maxNameInError bytes.
func quoteName(s string) string {
	if len(s) <= maxNameInError {
		return strconv.Quote(s)
	}
	cut := maxNameInError
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// SanitizeMessage makes a message that may carry text from a file (a name, a
// library's error) safe to print on a terminal: control characters other than
// newline and tab become Go escapes, invalid UTF-8 becomes U+FFFD, and it is
// cut to max bytes (0: no limit).
func SanitizeMessage(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
		if max > 0 && b.Len() >= max {
			return b.String() + fmt.Sprintf("... (%d bytes)", len(s))
		}
	}
	return b.String()
}
