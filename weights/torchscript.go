package weights

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// CheckTorchScriptFile checks a TorchScript archive (torch.jit.save) before it
// is handed to libtorch, which trusts it: libtorch sizes each tensor storage
// from the pickle, not from the record holding its bytes, so a record cut
// short or emptied gives tensors whose tail is whatever memory follows (or a
// crash). The check parses the archive's data.pkl and constants.pkl with this
// package's inert unpickler (nothing runs) and requires every storage they
// name to have a record holding at least its bytes and every tensor to lie
// inside its storage; it also applies the zip checks of the torch.save reader
// (every record uncompressed, once, with a matching CRC-32). Errors name the
// file and the record.
//
// Passing the check does not make the file safe to load: TorchScript
// archives carry code that libtorch runs while loading (a module's
// __setstate__), which the check does not look at.
func CheckTorchScriptFile(path string) error {
	_, err := readPath(path, func(r io.ReaderAt, size int64) (*Checkpoint, error) {
		return &Checkpoint{}, checkTorchScript(r, size)
	})
	return err
}

// CheckTorchScriptBytes is CheckTorchScriptFile for a file's contents held in memory.
func CheckTorchScriptBytes(data []byte) error {
	_, err := readMemory(data, func(r io.ReaderAt, size int64) (*Checkpoint, error) {
		return &Checkpoint{}, checkTorchScript(r, size)
	})
	return err
}

// torchScriptArchives are the pickles of a TorchScript archive that hold
// tensors, and the record directory each one's storages live in.
var torchScriptArchives = []struct{ pickle, dir string }{
	{"data.pkl", "data/"},
	{"constants.pkl", "constants/"},
}

func checkTorchScript(r io.ReaderAt, size int64) error {
	z, err := openZip(r, size)
	if err != nil {
		return err
	}
	prefix := ""
	for _, f := range z.files {
		if err := checkRecordCRC(f); err != nil {
			return err
		}
		dir, base := path.Split(f.Name)
		if base == "data.pkl" && strings.Count(dir, "/") == 1 && prefix == "" {
			prefix = dir
		}
	}
	if prefix == "" {
		return errors.New("zip archive has no <dir>/data.pkl: not a TorchScript archive this reader can check (files from PyTorch before 1.4 must be re-saved)")
	}
	for _, a := range torchScriptArchives {
		f, ok := z.records[prefix+a.pickle]
		if !ok {
			if a.pickle == "data.pkl" {
				return fmt.Errorf("no record %s", quoteName(prefix+a.pickle))
			}
			continue
		}
		if err := checkTorchScriptPickle(z, f, prefix+a.dir); err != nil {
			return err
		}
	}
	return nil
}

// checkTorchScriptPickle unpickles one of the archive's pickles and checks the
// storages and tensors it describes against the records in dir.
func checkTorchScriptPickle(z *zipArchive, pkl *zip.File, dir string) error {
	data, err := readRecord(pkl, pkl.UncompressedSize64, z.size)
	if err != nil {
		return err
	}
	storages := map[string]*storageRef{}
	var recordErr error // a storage that does not fit its record: reported as it is
	persistentLoad := func(pid any) (_ any, err error) {
		defer func() {
			if err != nil && recordErr == nil {
				recordErr = err
			}
		}()
		cls, key, n, nbytes, err := storagePID(pid)
		if err != nil {
			return nil, err
		}
		if ref, ok := storages[key]; ok {
			if ref.st.dtype.Size() != cls.dtype.Size() || ref.numel != n {
				return nil, fmt.Errorf("storage %s is named as %d×%s and %d×%s", quoteName(key), ref.numel, ref.st.dtype, n, cls.dtype)
			}
			return ref, nil
		}
		rec, ok := z.records[dir+key]
		if !ok {
			return nil, fmt.Errorf("storage %s: no record %s in the archive", quoteName(key), quoteName(dir+key))
		}
		if err := refuseCompressed(rec); err != nil {
			return nil, err
		}
		if uint64(nbytes) > rec.UncompressedSize64 {
			return nil, fmt.Errorf("record %s holds %d bytes, but the archive's %s says its storage has %d elements of %s (%d bytes): the file is truncated or damaged",
				quoteName(rec.Name), rec.UncompressedSize64, path.Base(pkl.Name), n, cls.dtype, nbytes)
		}
		ref := &storageRef{st: &storage{key: key, dtype: cls.dtype, numel: n}, numel: n}
		storages[key] = ref
		return ref, nil
	}
	if _, _, err := unpickleWith(data, findTorchScriptClass, persistentLoad); err != nil {
		if recordErr != nil {
			err = recordErr
		}
		return fmt.Errorf("%s: %w", quoteName(pkl.Name), err)
	}
	return nil
}

// findTorchScriptClass resolves the globals of a TorchScript archive's
// pickles for the check: tensors and storages get their meaning (a tensor's
// view is checked against its storage as it is built); everything else
// (__torch__ module classes, torch.jit._pickle helpers) is an inert
// placeholder, since nothing of it is used or run here.
func findTorchScriptClass(module, name string) (any, error) {
	switch full := module + "." + name; full {
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		return callFunc(func(args ...any) (any, error) {
			t, err := rebuildTensor(args...)
			if err != nil {
				return nil, err
			}
			if err := t.(*tensorRef).checkView(); err != nil {
				return nil, err
			}
			return t, nil
		}), nil
	}
	if v, err := findClass(module, name); err == nil {
		return v, nil
	}
	return &pyClass{SanitizeMessage(module, maxNameInError), SanitizeMessage(name, maxNameInError)}, nil
}
