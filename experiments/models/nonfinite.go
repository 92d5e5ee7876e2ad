package models

import (
	"encoding/binary"
	"fmt"
	"strings"

	"modelstitch/weights"
)

// nonFinite lists the floating-point tensors of sd that hold a NaN or an
// infinity, with the count of such values in each. A network with such
// weights computes NaN for every input, and its argmax then picks class 0:
// 10 % "accuracy" on a balanced ten-class test set, which looks like a
// result unless someone says otherwise.
func nonFinite(sd *weights.StateDict) (keys []string, counts []int64) {
	for _, k := range sd.Keys {
		t := sd.Tensors[k]
		if t == nil || !t.DType.IsFloat() {
			continue
		}
		var n int64
		d := t.Data
		switch t.DType {
		case weights.Float32:
			for i := 0; i+4 <= len(d); i += 4 {
				if binary.LittleEndian.Uint32(d[i:])>>23&0xff == 0xff {
					n++
				}
			}
		case weights.Float64:
			for i := 0; i+8 <= len(d); i += 8 {
				if binary.LittleEndian.Uint64(d[i:])>>52&0x7ff == 0x7ff {
					n++
				}
			}
		case weights.Float16:
			for i := 0; i+2 <= len(d); i += 2 {
				if binary.LittleEndian.Uint16(d[i:])>>10&0x1f == 0x1f {
					n++
				}
			}
		case weights.BFloat16:
			for i := 0; i+2 <= len(d); i += 2 {
				if binary.LittleEndian.Uint16(d[i:])>>7&0xff == 0xff {
					n++
				}
			}
		}
		if n > 0 {
			keys, counts = append(keys, k), append(counts, n)
		}
	}
	return keys, counts
}

// nonFiniteWarning describes nonFinite's findings in one line ("" when none).
func nonFiniteWarning(sd *weights.StateDict) string {
	keys, counts := nonFinite(sd)
	if len(keys) == 0 {
		return ""
	}
	var total int64
	for _, c := range counts {
		total += c
	}
	shown := keys
	if len(shown) > 3 {
		shown = shown[:3]
	}
	more := ""
	if len(keys) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(keys)-len(shown))
	}
	return fmt.Sprintf("%d weight values are NaN or infinite, in %d tensors (%s%s): the network's outputs are NaN and any accuracy measured with it is meaningless (training diverged, or the file is damaged)",
		total, len(keys), weights.SanitizeMessage(strings.Join(shown, ", "), 300), more)
}
