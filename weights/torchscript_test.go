package weights

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// torchScriptFixtures has PyTorch write two small TorchScript archives: a
// scripted network (tensors in data/) and a traced module with a tensor
// constant (in constants/).
const torchScriptFixtures = `
import sys, torch, torch.nn as nn
torch.manual_seed(0)
out = sys.argv[1]
net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
torch.jit.save(torch.jit.script(net), out + "/net.pt")
class C(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.c = torch.arange(64.)
    def forward(self, x):
        return self.lin(x) + self.c[:2]
torch.jit.save(torch.jit.trace(C(), torch.randn(1, 3)), out + "/const.pt")
`

// torchScriptFiles returns the fixtures' bytes, by name.
func torchScriptFiles(t *testing.T) map[string][]byte {
	dir := t.TempDir()
	runPython(t, torchScriptFixtures, dir)
	out := map[string][]byte{}
	for _, n := range []string{"net.pt", "const.pt"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	return out
}

// largestRecord returns the index of the largest record whose directory is
// <archive>/<dir>/.
func largestRecord(entries []zipEntry, dir string) int {
	best := -1
	for i, e := range entries {
		if d := path.Base(path.Dir(e.name)); d == dir && (best < 0 || len(e.body) > len(entries[best].body)) {
			best = i
		}
	}
	return best
}

func TestCheckTorchScriptRecords(t *testing.T) {
	files := torchScriptFiles(t)
	for name, data := range files {
		if err := CheckTorchScriptBytes(data); err != nil {
			t.Errorf("%s as PyTorch wrote it: %v", name, err)
		}
	}
	cases := []struct {
		name, file, dir string
		keep            int // bytes of the record kept
		want            string
	}{
		{"data record emptied", "net.pt", "data", 0, "holds 0 bytes"},
		{"data record cut", "net.pt", "data", 5, "holds 5 bytes"},
		{"constant record cut", "const.pt", "constants", 12, "holds 12 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			entries := zipEntries(t, files[c.file])
			i := largestRecord(entries, c.dir)
			if i < 0 {
				t.Fatalf("%s has no %s/ record", c.file, c.dir)
			}
			entries[i].body = entries[i].body[:c.keep]
			err := CheckTorchScriptBytes(zipFrom(t, entries))
			wantErr(t, err, entries[i].name, c.want, "truncated")
		})
	}
	t.Run("record missing", func(t *testing.T) {
		entries := zipEntries(t, files["net.pt"])
		i := largestRecord(entries, "data")
		name := entries[i].name
		entries = append(entries[:i], entries[i+1:]...)
		wantErr(t, CheckTorchScriptBytes(zipFrom(t, entries)), name, "no record")
	})
	t.Run("damaged byte", func(t *testing.T) {
		entries := zipEntries(t, files["net.pt"])
		i := largestRecord(entries, "data")
		data := append([]byte(nil), files["net.pt"]...)
		at := strings.Index(string(data), string(entries[i].body))
		data[at+7] ^= 1
		wantErr(t, CheckTorchScriptBytes(data), entries[i].name, "CRC")
	})
	t.Run("compressed tensor record", func(t *testing.T) {
		entries := zipEntries(t, files["net.pt"])
		i := largestRecord(entries, "data")
		entries[i].method = 8
		wantErr(t, CheckTorchScriptBytes(zipFrom(t, entries)), entries[i].name, "compressed")
	})
	t.Run("code bomb", func(t *testing.T) {
		// TorchScript deflates its code records; their expanded size is bounded.
		entries := zipEntries(t, files["net.pt"])
		entries = append(entries, zipEntry{"net/code/__torch__/bomb.py", make([]byte, 64<<20), 8})
		wantErr(t, CheckTorchScriptBytes(zipFrom(t, entries)), "bomb.py", "times the file's size")
	})
}
