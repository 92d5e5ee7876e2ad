package results

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"modelstitch/weights/defaults"
)

// Digest returns the SHA-256 (hex) of a checkpoint's bytes, the identity rows
// are keyed by (Row.BottomSHA256, Row.TopSHA256): of the file at path, or of
// a shipped default ("embedded:NAME"). A path that names no file (the random
// bottom, "random") has no digest: "" and no error.
func Digest(path string) (string, error) {
	h := sha256.New()
	f, err := defaults.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !defaults.IsEmbedded(path) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return "", nil
	}
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("results: hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Digests returns the digests of a bottom and a top checkpoint (see Digest).
func Digests(bottomPath, topPath string) (bottom, top string, err error) {
	if bottom, err = Digest(bottomPath); err != nil {
		return "", "", err
	}
	if top, err = Digest(topPath); err != nil {
		return "", "", err
	}
	return bottom, top, nil
}
